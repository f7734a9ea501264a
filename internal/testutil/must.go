package testutil

import (
	"os"
	"testing"
)

// NoError fails the test at once when err is not nil: for test set-up
// whose failure would make later checks meaningless.
func NoError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ReadFile returns the content of the file name, failing the test when it
// cannot be read.
func ReadFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
