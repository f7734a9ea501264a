package nfsroot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNoFirmware is returned when the model needs firmware files and none
// were found.
var ErrNoFirmware = errors.New("nfsroot: no Raspberry Pi firmware")

// ErrNoDTBs is returned when neither the system nor the firmware
// directory has device trees.
var ErrNoDTBs = errors.New("nfsroot: no device trees")

// Boot describes boot/, the directory the Pi loads over TFTP.
type Boot struct {
	Model Model
	// Kernel and Initrd are host paths; the kernel is written under
	// Model.KernelName(), the initrd as InitrdName.
	Kernel string
	Initrd string
	// Firmware is a host directory with the firmware files (bootcode.bin,
	// start*.elf, fixup*.dat), as nixpkgs' raspberrypifw has them in
	// share/raspberrypi/boot (which is looked into when Firmware is that
	// package). It may be "" for the Pi 5, whose firmware is in EEPROM.
	Firmware string
	// DTBs is the system's dtbs directory (host path), "" when it has
	// none: every *.dtb below it is written to boot/ and its overlays/ to
	// boot/overlays. Without it, the device trees and overlays come from
	// Firmware.
	DTBs string
	// ConfigTxt and CmdlineTxt are the texts of config.txt and
	// cmdline.txt (see Config and Cmdline).
	ConfigTxt  []byte
	CmdlineTxt []byte
	// Serials are serial numbers (see ParseSerial): boot/<serial>/ gets a
	// copy of every file, as the bootloader asks for them there first.
	Serials []string
}

// BootResult describes a written boot/.
type BootResult struct {
	// Files are the written files relative to boot/, sorted, without the
	// serial-number copies.
	Files []string
	// FirmwareDir is the directory the firmware files came from ("" for
	// none).
	FirmwareDir string
	// DTBSource says where the device trees came from.
	DTBSource string
	// Warnings are things the user should know (missing device trees for
	// the model, ...).
	Warnings []string
}

// firmwareDir returns where the firmware files are in dir: dir itself,
// or share/raspberrypi/boot below it (nixpkgs' raspberrypifw).
func firmwareDir(dir string) string {
	sub := filepath.Join(dir, "share", "raspberrypi", "boot")
	if st, err := os.Stat(sub); err == nil && st.IsDir() {
		return sub
	}
	return dir
}

// isFirmwareFile reports whether a file name is one of the firmware's.
func isFirmwareFile(name string) bool {
	if name == "bootcode.bin" {
		return true
	}
	if ok, _ := path.Match("start*.elf", name); ok {
		return true
	}
	ok, _ := path.Match("fixup*.dat", name)
	return ok
}

// HasFirmware reports whether dir (or its share/raspberrypi/boot) holds
// Raspberry Pi firmware files.
func HasFirmware(dir string) bool {
	names, err := readDirNames(firmwareDir(dir))
	if err != nil {
		return false
	}
	for _, n := range names {
		if isFirmwareFile(n) {
			return true
		}
	}
	return false
}

// plan maps names in boot/ to the host files they are copied from.
type plan map[string]string

func (p plan) add(name, src string) error {
	if old, ok := p[name]; ok && old != src {
		same, err := sameContent(old, src)
		if err != nil {
			return err
		}
		if !same {
			return fmt.Errorf("nfsroot: boot/%s would come from both %s and %s", name, old, src)
		}
		return nil
	}
	p[name] = src
	return nil
}

// Plan returns the files of boot/ (relative names) and the host files
// they are copied from, without config.txt and cmdline.txt.
func (b Boot) Plan() (map[string]string, *BootResult, error) {
	if _, err := ParseModel(string(b.Model)); err != nil {
		return nil, nil, err
	}
	for _, in := range []struct{ what, f string }{{"kernel", b.Kernel}, {"initrd", b.Initrd}} {
		what, f := in.what, in.f
		if st, err := os.Stat(f); err != nil {
			return nil, nil, fmt.Errorf("nfsroot: %s: %w", what, err)
		} else if !st.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("nfsroot: %s %s is not a regular file", what, f)
		}
	}
	res := &BootResult{}
	p := plan{}
	if err := p.add(b.Model.KernelName(), b.Kernel); err != nil {
		return nil, nil, err
	}
	if err := p.add(InitrdName, b.Initrd); err != nil {
		return nil, nil, err
	}

	// Firmware.
	if b.Firmware != "" {
		res.FirmwareDir = firmwareDir(b.Firmware)
		names, err := readDirNames(res.FirmwareDir)
		if err != nil {
			return nil, nil, fmt.Errorf("nfsroot: firmware: %w", err)
		}
		for _, n := range names {
			if isFirmwareFile(n) {
				if err := p.add(n, filepath.Join(res.FirmwareDir, n)); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	var missing []string
	for _, n := range b.Model.FirmwareFiles() {
		if _, ok := p[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		where := "no --firmware directory given"
		if b.Firmware != "" {
			where = res.FirmwareDir + " lacks them"
		}
		return nil, nil, fmt.Errorf("%w: the %s needs %s, and %s (pass --firmware with the boot files of nixpkgs' raspberrypifw, share/raspberrypi/boot)",
			ErrNoFirmware, b.Model, strings.Join(missing, ", "), where)
	}

	// Device trees and overlays.
	var dtbs []string
	switch {
	case b.DTBs != "":
		res.DTBSource = b.DTBs
		err := filepath.WalkDir(b.DTBs, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(b.DTBs, p)
			if d.IsDir() && d.Name() == "overlays" && filepath.Dir(rel) == "." {
				return fs.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(d.Name(), ".dtb") {
				dtbs = append(dtbs, p)
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("nfsroot: device trees: %w", err)
		}
		if err := addOverlays(p, filepath.Join(b.DTBs, "overlays")); err != nil {
			return nil, nil, err
		}
	case res.FirmwareDir != "":
		res.DTBSource = res.FirmwareDir
		names, _ := readDirNames(res.FirmwareDir)
		for _, n := range names {
			if strings.HasSuffix(n, ".dtb") {
				dtbs = append(dtbs, filepath.Join(res.FirmwareDir, n))
			}
		}
		if err := addOverlays(p, filepath.Join(res.FirmwareDir, "overlays")); err != nil {
			return nil, nil, err
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("the system has no dtbs: device trees and overlays come from %s", res.FirmwareDir))
	}
	if len(dtbs) == 0 {
		return nil, nil, fmt.Errorf("%w: the system has no dtbs and %s has no *.dtb files (pass --firmware with the firmware's device trees)", ErrNoDTBs, orNone(res.FirmwareDir))
	}
	matched := false
	for _, d := range dtbs {
		name := filepath.Base(d)
		if err := p.add(name, d); err != nil {
			return nil, nil, err
		}
		for _, pre := range b.Model.DTBPrefixes() {
			matched = matched || strings.HasPrefix(name, pre)
		}
	}
	if !matched {
		res.Warnings = append(res.Warnings, fmt.Sprintf("no device tree for the %s (%s*.dtb) in %s: is it a system for this model?",
			b.Model, strings.Join(b.Model.DTBPrefixes(), "*.dtb or "), res.DTBSource))
	}
	return p, res, nil
}

func orNone(s string) string {
	if s == "" {
		return "no --firmware directory was given"
	}
	return s
}

// addOverlays adds dir's files as overlays/<name>, when dir exists.
func addOverlays(p plan, dir string) error {
	names, err := readDirNames(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nfsroot: overlays: %w", err)
	}
	for _, n := range names {
		src := filepath.Join(dir, n)
		st, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("nfsroot: overlays: %w", err)
		}
		if st.Mode().IsRegular() {
			if err := p.add("overlays/"+n, src); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteBoot writes boot/ into dir, which must exist and be empty: the
// planned files (see Plan), config.txt, cmdline.txt and, per serial
// number, a directory with a copy of all of them. Files are 0644 and
// directories 0755.
func WriteBoot(dir string, b Boot) (*BootResult, error) {
	files, res, err := b.Plan()
	if err != nil {
		return nil, err
	}
	if len(b.ConfigTxt) == 0 || len(b.CmdlineTxt) == 0 {
		return nil, fmt.Errorf("%w: config.txt or cmdline.txt is empty", ErrBadText)
	}
	seen := map[string]bool{}
	for _, s := range b.Serials {
		if _, err := ParseSerial(s); err != nil {
			return nil, err
		}
		if seen[s] {
			return nil, fmt.Errorf("%w %q given twice", ErrBadSerial, s)
		}
		seen[s] = true
	}
	write := func(base string) error {
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			dst := filepath.Join(base, filepath.FromSlash(n))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("nfsroot: %w", err)
			}
			if _, err := copyFile(dst, files[n]); err != nil {
				return fmt.Errorf("nfsroot: boot/%s: %w", n, err)
			}
		}
		for name, text := range map[string][]byte{ConfigName: b.ConfigTxt, CmdlineName: b.CmdlineTxt} {
			if err := os.WriteFile(filepath.Join(base, name), text, 0o644); err != nil {
				return fmt.Errorf("nfsroot: %w", err)
			}
		}
		return nil
	}
	if err := write(dir); err != nil {
		return nil, err
	}
	for _, s := range b.Serials {
		sd := filepath.Join(dir, s)
		if _, ok := files[s]; ok {
			return nil, fmt.Errorf("%w %q: boot/ already has a file of that name", ErrBadSerial, s)
		}
		if err := os.Mkdir(sd, 0o755); err != nil {
			return nil, fmt.Errorf("nfsroot: %w", err)
		}
		if err := write(sd); err != nil {
			return nil, err
		}
	}
	c := newCopier(false)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		return c.finish(p, 0o644, false)
	})
	if err != nil {
		return nil, fmt.Errorf("nfsroot: %w", err)
	}
	// Directories last, deepest first, so their times stay.
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := c.finish(dirs[i], 0o755, false); err != nil {
			return nil, err
		}
	}
	for n := range files {
		res.Files = append(res.Files, n)
	}
	res.Files = append(res.Files, ConfigName, CmdlineName)
	sort.Strings(res.Files)
	return res, nil
}

// sameContent reports whether two files have the same bytes.
func sameContent(a, b string) (bool, error) {
	da, err := os.ReadFile(a)
	if err != nil {
		return false, fmt.Errorf("nfsroot: %w", err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		return false, fmt.Errorf("nfsroot: %w", err)
	}
	return string(da) == string(db), nil
}
