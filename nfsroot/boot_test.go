package nfsroot

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// writeFiles creates files (with their names as content unless given).
func writeFiles(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("content of "+f+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

// bootInputs makes a kernel, an initrd, a firmware directory laid out as
// nixpkgs' raspberrypifw (share/raspberrypi/boot) and a NixOS dtbs
// directory (broadcom/*.dtb, overlays/*.dtbo).
func bootInputs(t *testing.T) (kernel, initrd, firmware, dtbs string) {
	t.Helper()
	d := t.TempDir()
	writeFiles(t, d, "kernel/Image", "initrd/initrd")
	firmware = filepath.Join(d, "raspberrypifw")
	writeFiles(t, filepath.Join(firmware, "share/raspberrypi/boot"),
		"bootcode.bin", "start.elf", "start_x.elf", "fixup.dat", "fixup_x.dat", "start4.elf", "fixup4.dat",
		"bcm2710-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb", "overlays/fw-only.dtbo", "LICENCE.broadcom", "kernel8.img", "cmdline.txt")
	dtbs = filepath.Join(d, "dtbs")
	writeFiles(t, dtbs, "broadcom/bcm2711-rpi-4-b.dtb", "broadcom/bcm2711-rpi-400.dtb", "broadcom/bcm2712-rpi-5-b.dtb",
		"overlays/vc4-kms-v3d.dtbo", "overlays/README")
	return filepath.Join(d, "kernel/Image"), filepath.Join(d, "initrd/initrd"), firmware, dtbs
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			out[rel] = fi.Mode().String() + " " + string(testutil.ReadFile(t, p))
		}
		return nil
	})
	testutil.NoError(t, err)
	return out
}

func TestWriteBoot(t *testing.T) {
	kernel, initrd, firmware, dtbs := bootInputs(t)
	dir := t.TempDir()
	res, err := WriteBoot(dir, Boot{
		Model: Pi4, Kernel: kernel, Initrd: initrd, Firmware: firmware, DTBs: dtbs,
		ConfigTxt: []byte("config\n"), CmdlineTxt: []byte("cmdline\n"),
		Serials: []string{"1a2b3c4d", "00c0ffee"},
	})
	if err != nil {
		t.Fatal(err)
	}
	fw := "content of "
	want := map[string]string{
		"kernel8.img":               fw + "kernel/Image\n",
		"initrd":                    fw + "initrd/initrd\n",
		"config.txt":                "config\n",
		"cmdline.txt":               "cmdline\n",
		"bootcode.bin":              fw + "bootcode.bin\n",
		"start.elf":                 fw + "start.elf\n",
		"start_x.elf":               fw + "start_x.elf\n",
		"start4.elf":                fw + "start4.elf\n",
		"fixup.dat":                 fw + "fixup.dat\n",
		"fixup_x.dat":               fw + "fixup_x.dat\n",
		"fixup4.dat":                fw + "fixup4.dat\n",
		"bcm2711-rpi-4-b.dtb":       fw + "broadcom/bcm2711-rpi-4-b.dtb\n",
		"bcm2711-rpi-400.dtb":       fw + "broadcom/bcm2711-rpi-400.dtb\n",
		"bcm2712-rpi-5-b.dtb":       fw + "broadcom/bcm2712-rpi-5-b.dtb\n",
		"overlays/vc4-kms-v3d.dtbo": fw + "overlays/vc4-kms-v3d.dtbo\n",
		"overlays/README":           fw + "overlays/README\n",
	}
	got := readTree(t, dir)
	wantAll := map[string]string{}
	for n, c := range want {
		wantAll[n] = "-rw-r--r-- " + c
		for _, s := range []string{"1a2b3c4d", "00c0ffee"} {
			wantAll[s+"/"+n] = "-rw-r--r-- " + c
		}
	}
	if !reflect.DeepEqual(got, wantAll) {
		for n := range wantAll {
			if got[n] != wantAll[n] {
				t.Errorf("%s: %q, want %q", n, got[n], wantAll[n])
			}
		}
		for n := range got {
			if _, ok := wantAll[n]; !ok {
				t.Errorf("unexpected %s", n)
			}
		}
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(res.Files, names) {
		t.Errorf("Files = %v\nwant %v", res.Files, names)
	}
	if res.FirmwareDir != filepath.Join(firmware, "share/raspberrypi/boot") || res.DTBSource != dtbs || len(res.Warnings) != 0 {
		t.Errorf("result %+v", res)
	}
}

func TestBootPlan(t *testing.T) {
	kernel, initrd, firmware, dtbs := bootInputs(t)
	fwDir := filepath.Join(firmware, "share/raspberrypi/boot")
	for _, tc := range []struct {
		name     string
		b        Boot
		err      error
		want     []string // files that must be planned
		not      []string // files that must not
		warnings []string // substrings of the warnings
	}{
		{name: "pi5 kernel name, no firmware needed", b: Boot{Model: Pi5, DTBs: dtbs},
			want: []string{"kernel_2712.img", "initrd", "bcm2712-rpi-5-b.dtb"}, not: []string{"kernel8.img", "start4.elf"}},
		{name: "pi3 dtbs from firmware", b: Boot{Model: Pi3, Firmware: fwDir},
			want: []string{"kernel8.img", "bootcode.bin", "bcm2710-rpi-3-b.dtb", "overlays/fw-only.dtbo"},
			not:  []string{"LICENCE.broadcom", "cmdline.txt", "overlays/vc4-kms-v3d.dtbo"}, warnings: []string{"no dtbs"}},
		{name: "pi3 with pi4 dtbs warns", b: Boot{Model: Pi3, Firmware: firmware, DTBs: dtbs},
			warnings: []string{"no device tree for the pi3"}},
		{name: "pi4 without firmware", b: Boot{Model: Pi4, DTBs: dtbs}, err: ErrNoFirmware},
		{name: "pi3 firmware lacking bootcode.bin", b: Boot{Model: Pi3, Firmware: filepath.Dir(kernel), DTBs: dtbs}, err: ErrNoFirmware},
		{name: "pi5 without device trees", b: Boot{Model: Pi5}, err: ErrNoDTBs},
		{name: "unknown model", b: Boot{Model: "pi1"}, err: ErrBadModel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.b.Kernel, tc.b.Initrd = kernel, initrd
			files, res, err := tc.b.Plan()
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.want {
				if _, ok := files[n]; !ok {
					t.Errorf("%s not planned: %v", n, files)
				}
			}
			for _, n := range tc.not {
				if _, ok := files[n]; ok {
					t.Errorf("%s planned", n)
				}
			}
			all := strings.Join(res.Warnings, "\n")
			for _, w := range tc.warnings {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q lack %q", res.Warnings, w)
				}
			}
			if len(tc.warnings) == 0 && len(res.Warnings) > 0 {
				t.Errorf("warnings %q", res.Warnings)
			}
		})
	}
}

func TestWriteBootErrors(t *testing.T) {
	kernel, initrd, firmware, dtbs := bootInputs(t)
	ok := Boot{Model: Pi4, Kernel: kernel, Initrd: initrd, Firmware: firmware, DTBs: dtbs, ConfigTxt: []byte("c\n"), CmdlineTxt: []byte("c\n")}
	// The same name from two sources with different bytes.
	clash := filepath.Join(t.TempDir(), "dtbs")
	writeFiles(t, clash, "a/bcm2711-rpi-4-b.dtb")
	testutil.NoError(t, os.MkdirAll(filepath.Join(clash, "b"), 0o755))
	testutil.NoError(t, os.WriteFile(filepath.Join(clash, "b/bcm2711-rpi-4-b.dtb"), []byte("other"), 0o644))
	for name, tc := range map[string]struct {
		mod  func(*Boot)
		want string
	}{
		"bad serial":     {func(b *Boot) { b.Serials = []string{"xyz"} }, "xyz"},
		"serial twice":   {func(b *Boot) { b.Serials = []string{"1a2b3c4d", "1a2b3c4d"} }, "twice"},
		"no cmdline":     {func(b *Boot) { b.CmdlineTxt = nil }, "cmdline.txt"},
		"missing kernel": {func(b *Boot) { b.Kernel = filepath.Join(t.TempDir(), "no-kernel") }, "no-kernel"},
		"dtb clash":      {func(b *Boot) { b.DTBs = clash }, "bcm2711-rpi-4-b.dtb"},
	} {
		t.Run(name, func(t *testing.T) {
			b := ok
			tc.mod(&b)
			_, err := WriteBoot(t.TempDir(), b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}
