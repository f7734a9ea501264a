package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const testDep = `kernel/drivers/md/dm-verity.ko.xz: kernel/drivers/md/dm-bufio.ko.xz kernel/lib/reed_solomon/reed_solomon.ko.xz kernel/drivers/md/dm-mod.ko.xz
kernel/drivers/md/dm-bufio.ko.xz:
kernel/drivers/md/dm-mod.ko.xz:
kernel/lib/reed_solomon/reed_solomon.ko.xz:
kernel/drivers/block/nbd.ko.xz:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/net/core/failover.ko.xz:
`

const testAlias = `# Aliases extracted from modules themselves.
alias virtio:d00000001v* virtio_net
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias devname:nbd-control nbd
alias block-major-43-* nbd
`

func testIndex(t *testing.T) *Index {
	t.Helper()
	ix, err := Parse(strings.NewReader(testDep), strings.NewReader(testAlias), strings.NewReader("kernel/drivers/virtio/virtio_pci.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/md/dm-verity.ko.xz": "dm_verity",
		"dm-verity":                         "dm_verity",
		"nbd.ko":                            "nbd",
		"virtio_net.ko.zst":                 "virtio_net",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrder(t *testing.T) {
	ix := testIndex(t)
	got, err := ix.Order("dm-verity", "nbd", "virtio_pci", "virtio_net", "dm_mod")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/md/dm-mod.ko.xz",
		"kernel/lib/reed_solomon/reed_solomon.ko.xz",
		"kernel/drivers/md/dm-bufio.ko.xz",
		"kernel/drivers/md/dm-verity.ko.xz",
		"kernel/drivers/block/nbd.ko.xz",
		"kernel/net/core/failover.ko.xz",
		"kernel/drivers/net/net_failover.ko.xz",
		"kernel/drivers/net/virtio_net.ko.xz",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Order:\n got %q\nwant %q", got, want)
	}
	if _, err := ix.Order("nosuch"); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown module: %v", err)
	}
	bad, err := Parse(strings.NewReader("a.ko: b.ko\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Order("a"); !errors.Is(err, ErrUnknown) {
		t.Errorf("missing dependency: %v", err)
	}
	loop, err := Parse(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := loop.Order("a"); err != nil || len(got) != 2 {
		t.Errorf("a dependency loop: %q, %v", got, err)
	}
	if _, err := Parse(strings.NewReader(":\n"), nil, nil); err == nil {
		t.Error("a line without a module was accepted")
	}
}

func TestMatch(t *testing.T) {
	ix := testIndex(t)
	for alias, want := range map[string][]string{
		"virtio:d00000001v00001AF4":                             {"virtio_net"},
		"virtio:d00000002v00001AF4":                             {},
		"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00": {}, // e1000 is not in modules.dep
		"": {},
	} {
		if got := ix.Match(alias); !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %q, want %q", alias, got, want)
		}
	}
	if !ix.Builtin("virtio-pci") || ix.Builtin("nbd") || !ix.Has("nbd") {
		t.Error("Builtin/Has disagree with the index")
	}
}

func TestFilter(t *testing.T) {
	ix := testIndex(t)
	files, err := ix.Closure("virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	dep := ix.FilterDep(files)
	sub, err := Parse(strings.NewReader(dep), strings.NewReader(ix.FilterAlias([]string{"virtio_net"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sub.Modules(), []string{"failover", "net_failover", "virtio_net"}) {
		t.Errorf("filtered modules: %q", sub.Modules())
	}
	if got := sub.Match("virtio:d00000001v00001AF4"); !slices.Equal(got, []string{"virtio_net"}) {
		t.Errorf("filtered aliases: %q", got)
	}
}

// TestHostModules reads the running system's modules tree, written by
// depmod (an independent writer), when there is one.
func TestHostModules(t *testing.T) {
	dirs, err := filepath.Glob("/lib/modules/*/modules.dep")
	if err != nil || len(dirs) == 0 {
		t.Skip("no /lib/modules/*/modules.dep on this machine")
	}
	dir := filepath.Dir(dirs[len(dirs)-1])
	open := func(n string) *os.File {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	ix, err := Parse(open("modules.dep"), open("modules.alias"), open("modules.builtin"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := ix.Order("dm_verity")
	if err != nil {
		t.Skipf("this kernel has no loadable dm_verity: %v", err)
	}
	if Name(files[len(files)-1]) != "dm_verity" || !slices.ContainsFunc(files, func(f string) bool { return Name(f) == "dm_mod" }) {
		t.Errorf("dm_verity order %q: want dm_mod before it, dm_verity last", files)
	}
	if ix.Has("virtio_net") && !slices.Contains(ix.Match("virtio:d00000001v00001AF4"), "virtio_net") {
		t.Error("virtio-net's modalias does not select virtio_net")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(testDep, testAlias, "virtio:d00000001v00001AF4")
	f.Add("a.ko: b.ko\nb.ko: a.ko\n", "alias [ a\n", "x")
	f.Fuzz(func(t *testing.T, dep, alias, modalias string) {
		ix, err := Parse(strings.NewReader(dep), strings.NewReader(alias), nil)
		if err != nil {
			return
		}
		for _, m := range ix.Match(modalias) {
			if !ix.Has(m) {
				t.Fatalf("Match returned %q, which is not loadable", m)
			}
		}
		for _, m := range ix.Modules() {
			files, err := ix.Order(m)
			if err != nil {
				continue
			}
			if len(files) == 0 || Name(files[len(files)-1]) != m && !slices.ContainsFunc(files, func(f string) bool { return Name(f) == m }) {
				t.Fatalf("Order(%q) = %q lacks the module", m, files)
			}
		}
	})
}
