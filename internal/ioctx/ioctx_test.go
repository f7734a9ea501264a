package ioctx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	if _, err := io.Copy(&out, Reader(ctx, strings.NewReader("abc"))); err != nil || out.String() != "abc" {
		t.Fatalf("copy before cancel: %q, %v", out.String(), err)
	}
	cancel()
	if _, err := io.Copy(&out, Reader(ctx, strings.NewReader("def"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("copy after cancel: error %v, want context.Canceled", err)
	}
}
