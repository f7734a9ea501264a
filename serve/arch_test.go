package serve

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/serve/dhcp"
)

// fakePE is the start of a PE image of the given COFF machine type: what
// peArch reads, not a program.
func fakePE(machine uint16) []byte {
	b := make([]byte, 0x90)
	b[0], b[1] = 'M', 'Z'
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x84:], machine)
	return b
}

// TestDecideArch: a UKI named nixos.efi (or uki.efi) goes to clients of
// the architecture its directory's manifest.json names (a netboot dir's
// inputs.arch, a pxe tree's entry arch), else its PE header's, and never
// to the other architecture; the explicit -aa64 names stay a fallback.
func TestDecideArch(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"x86/manifest.json": `{"inputs": {"arch": "x86_64"}}`,
		"x86/nixos.efi":     "x86 uki",
		"arm/manifest.json": `{"inputs": {"arch": "aarch64"}}`,
		"arm/nixos.efi":     "arm uki",
		// A pxe tree: one manifest for the tree, an arch per entry; the
		// first system (inputs) is x86, the entry says otherwise.
		"pxe/manifest.json":       `{"inputs": {"arch": "x86_64"}, "entries": [{"dir": "tftp/a", "arch": "aarch64"}, {"dir": "tftp/b", "arch": "x86_64"}, {"dir": "elsewhere", "uki": "tftp/d/uki.efi", "arch": "aarch64"}]}`,
		"pxe/tftp/d/uki.efi":      "arm uki named by its entry",
		"pxe/tftp/a/nixos.efi":    "arm uki",
		"pxe/tftp/b/nixos.efi":    "x86 uki",
		"pe/uki.efi":              string(fakePE(peMachineARM64)),
		"legacy/nixos-aa64.efi":   "arm uki",
		"legacy/nixos.efi":        "unknown: taken as x86",
		"broken/manifest.json":    `{"inputs": `,
		"broken/nixos.efi":        string(fakePE(peMachineARM64)),
		"noarch/manifest.json":    `{"inputs": {}}`,
		"noarch/nixos.efi":        string(fakePE(peMachineARM64)),
		"pxe/tftp/c/nixos.efi":    string(fakePE(peMachineAMD64)), // not an entry: its PE header
		"pxe/tftp/c/manifest.txt": "not a manifest",
	}
	for f, b := range files {
		writeFile(t, filepath.Join(root, f), []byte(b))
	}
	macs := map[string]string{
		"52:54:00:00:01:01": "x86", "52:54:00:00:01:02": "arm", "52:54:00:00:01:03": "pxe/tftp/a",
		"52:54:00:00:01:04": "pxe/tftp/b", "52:54:00:00:01:05": "pe", "52:54:00:00:01:06": "legacy",
		"52:54:00:00:01:08": "broken", "52:54:00:00:01:09": "noarch", "52:54:00:00:01:0a": "pxe/tftp/c", "52:54:00:00:01:0b": "pxe/tftp/d",
	}
	mj := "{"
	for mac, dir := range macs {
		if mj != "{" {
			mj += ","
		}
		mj += `"` + mac + `": {"dir": "` + dir + `"}`
	}
	machines := filepath.Join(t.TempDir(), "machines.json")
	writeFile(t, machines, []byte(mj+"}"))
	s, _ := running(t, Options{Dirs: []string{root}, Machines: machines, Advertise: net.IPv4(127, 0, 0, 1)})
	base := "http://" + s.Addr("http").String()

	cases := []struct {
		mac   string
		class dhcp.Class
		want  string
	}{
		{"52:54:00:00:01:01", dhcp.ClassEFIx86, "x86/nixos.efi"},
		{"52:54:00:00:01:01", dhcp.ClassEFIArm64, ""},
		{"52:54:00:00:01:01", dhcp.ClassHTTPArm64, ""},
		{"52:54:00:00:01:02", dhcp.ClassEFIArm64, "arm/nixos.efi"},
		{"52:54:00:00:01:02", dhcp.ClassHTTPArm64, base + "/arm/nixos.efi"},
		{"52:54:00:00:01:02", dhcp.ClassEFIx86, ""},
		{"52:54:00:00:01:02", dhcp.ClassHTTPx86, ""},
		{"52:54:00:00:01:03", dhcp.ClassEFIArm64, "pxe/tftp/a/nixos.efi"},
		{"52:54:00:00:01:03", dhcp.ClassEFIx86, ""},
		{"52:54:00:00:01:04", dhcp.ClassEFIx86, "pxe/tftp/b/nixos.efi"},
		{"52:54:00:00:01:04", dhcp.ClassEFIArm64, ""},
		{"52:54:00:00:01:05", dhcp.ClassEFIArm64, "pe/uki.efi"},
		{"52:54:00:00:01:05", dhcp.ClassEFIx86, ""},
		{"52:54:00:00:01:06", dhcp.ClassEFIArm64, "legacy/nixos-aa64.efi"},
		{"52:54:00:00:01:06", dhcp.ClassEFIx86, "legacy/nixos.efi"},
		{"52:54:00:00:01:08", dhcp.ClassEFIArm64, "broken/nixos.efi"},
		{"52:54:00:00:01:08", dhcp.ClassEFIx86, ""},
		{"52:54:00:00:01:09", dhcp.ClassEFIArm64, "noarch/nixos.efi"},
		{"52:54:00:00:01:0a", dhcp.ClassEFIx86, "pxe/tftp/c/nixos.efi"},
		{"52:54:00:00:01:0a", dhcp.ClassEFIArm64, ""},
		{"52:54:00:00:01:0b", dhcp.ClassEFIArm64, "pxe/tftp/d/uki.efi"},
		{"52:54:00:00:01:0b", dhcp.ClassEFIx86, ""},
		// Not in the machine map: a UKI of its architecture from under
		// the roots, the first in lexical order.
		{"52:54:00:00:01:07", dhcp.ClassEFIArm64, "arm/nixos.efi"},
		{"52:54:00:00:01:07", dhcp.ClassHTTPArm64, base + "/arm/nixos.efi"},
		{"52:54:00:00:01:07", dhcp.ClassEFIx86, "legacy/nixos.efi"},
	}
	for _, c := range cases {
		mac, err := net.ParseMAC(c.mac)
		if err != nil {
			t.Fatal(err)
		}
		b, ok, err := s.Decide(context.Background(), dhcp.Client{MAC: mac, Class: c.class})
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			b.File = ""
		}
		if b.File != c.want {
			t.Errorf("%s (%s) %v: %q, want %q", c.mac, macs[c.mac], c.class, b.File, c.want)
		}
	}
}

// TestDecideArchShadowed: with two roots holding nixos.efi at the same
// name, clients reach only the first root's; an arm64 client is not told
// to load it because the second root's would suit it.
func TestDecideArchShadowed(t *testing.T) {
	x86, arm := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(x86, "manifest.json"), []byte(`{"inputs": {"arch": "x86_64"}}`))
	writeFile(t, filepath.Join(x86, "nixos.efi"), []byte("x86"))
	writeFile(t, filepath.Join(arm, "manifest.json"), []byte(`{"inputs": {"arch": "aarch64"}}`))
	writeFile(t, filepath.Join(arm, "nixos.efi"), []byte("arm"))
	mac, err := net.ParseMAC("52:54:00:00:02:01")
	if err != nil {
		t.Fatal(err)
	}
	for _, dirs := range [][]string{{x86, arm}, {arm, x86}} {
		s, _ := running(t, Options{Dirs: dirs, Advertise: net.IPv4(127, 0, 0, 1)})
		first := "x86"
		if dirs[0] == arm {
			first = "arm"
		}
		for _, class := range []dhcp.Class{dhcp.ClassEFIx86, dhcp.ClassEFIArm64} {
			b, ok, err := s.Decide(context.Background(), dhcp.Client{MAC: mac, Class: class})
			if err != nil {
				t.Fatal(err)
			}
			want := (class == dhcp.ClassEFIx86) == (first == "x86")
			if ok != want || (ok && b.File != "nixos.efi") {
				t.Errorf("roots %s first, %v: answered %v (%q), want %v", first, class, ok, b.File, want)
			}
		}
	}
}

// TestPEArch reads the machine type of real EFI programs: systemd's x86-64
// stub and, with the aarch64 fixture, its arm64 stub.
func TestPEArch(t *testing.T) {
	check := func(file, want string) {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got := peArch(f); got != want {
			t.Errorf("%s: %q, want %q", file, got, want)
		}
	}
	check(testutil.File(t, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd-boot-efi"), ArchX86)
	for _, b := range [][]byte{nil, []byte("MZ"), fakePE(0x14c), append([]byte("MZ"), make([]byte, 100)...)} {
		if got := peArch(bytes.NewReader(b)); got != "" {
			t.Errorf("peArch(%q) = %q, want \"\"", b, got)
		}
	}
	if testing.Short() {
		return
	}
	check(testutil.AArch64Stub(t, testutil.LoadFixtureAArch64(t)), ArchArm64)
}

// TestUnplacedClientPXETree: a client the machine map does not place,
// served a pxe tree, gets the UKI the tree's manifest.json names for its
// architecture (clients[].boot_file, what the tree's dnsmasq.conf gives),
// not the first in directory order.
func TestUnplacedClientPXETree(t *testing.T) {
	root := t.TempDir()
	for f, b := range map[string]string{
		"manifest.json": `{"inputs": {"arch": "aarch64"},
			"entries": [{"dir": "tftp/zz-first", "arch": "aarch64"}, {"dir": "tftp/aa-second", "arch": "aarch64"}],
			"clients": [{"client": "aarch64-efi", "client_arch": [11], "arch": "aarch64", "boot_file": "tftp/zz-first/nixos.efi"}]}`,
		"tftp/zz-first/nixos.efi":  "first system's uki",
		"tftp/aa-second/nixos.efi": "second system's uki",
	} {
		writeFile(t, filepath.Join(root, f), []byte(b))
	}
	s, _ := running(t, Options{Dirs: []string{root}, Advertise: net.IPv4(127, 0, 0, 1)})
	mac, err := net.ParseMAC("52:54:00:00:03:01")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second answer comes from memory
		b, ok, err := s.Decide(context.Background(), dhcp.Client{MAC: mac, Class: dhcp.ClassEFIArm64})
		if err != nil || !ok || b.File != "tftp/zz-first/nixos.efi" {
			t.Errorf("unplaced arm64 client: %q %v %v, want tftp/zz-first/nixos.efi", b.File, ok, err)
		}
	}
	if b, ok, err := s.Decide(context.Background(), dhcp.Client{MAC: mac, Class: dhcp.ClassEFIx86}); err != nil || ok {
		t.Errorf("unplaced x86 client: %q %v %v, want no answer (the tree has no x86 system)", b.File, ok, err)
	}
}
