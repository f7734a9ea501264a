package dm

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestRequest(t *testing.T) {
	// The values of DM_DEV_CREATE, DM_TABLE_LOAD and DM_DEV_SUSPEND as
	// strace prints them for dmsetup.
	for cmd, want := range map[uint]uint{cmdDevCreate: 0xc138fd03, cmdTableLoad: 0xc138fd09, cmdSuspend: 0xc138fd06, cmdVersion: 0xc138fd00} {
		if got := Request(cmd); got != want {
			t.Errorf("Request(%d) = %#x, want %#x", cmd, got, want)
		}
	}
}

func TestTableLoad(t *testing.T) {
	params := "1 /dev/nbd0 /dev/nbd0 4096 4096 2 3 sha256 " + strings.Repeat("ab", 32) + " -"
	b, err := TableLoad("nbimg-store", FlagReadOnly, Target{Start: 0, Length: 16, Type: "verity", Params: params})
	if err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != 4 || ne.Uint32(b[offDataStart:]) != ioctlSize || ne.Uint32(b[offTargets:]) != 1 ||
		ne.Uint32(b[offFlags:]) != FlagReadOnly || int(ne.Uint32(b[offDataSize:])) != len(b) {
		t.Errorf("header fields wrong")
	}
	if got := strings.TrimRight(string(b[offName:offName+nameLen]), "\x00"); got != "nbimg-store" {
		t.Errorf("name %q", got)
	}
	s := b[ioctlSize:]
	next := int(ne.Uint32(s[20:]))
	if ne.Uint64(s[8:]) != 16 || next%8 != 0 || ioctlSize+next != len(b) ||
		strings.TrimRight(string(s[24:40]), "\x00") != "verity" {
		t.Errorf("target spec wrong: next %d, len %d", next, len(b))
	}
	if got, _, _ := strings.Cut(string(s[targetSize:]), "\x00"); got != params {
		t.Errorf("params %q", got)
	}
	for _, bad := range []string{"", "a/b", strings.Repeat("x", 128)} {
		if _, err := Header(bad, 0); !errors.Is(err, ErrName) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if _, err := TableLoad("x", 0, Target{Type: "verity", Params: strings.Repeat("p", bufferSize)}); err == nil {
		t.Error("oversized parameters accepted")
	}
}
