package netstore

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/stage0"
)

// fakeModules writes a modules directory with three modules, one NIC
// driver among them, and one module nothing needs.
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.1.0-test")
	files := map[string]string{
		"kernel/drivers/block/nbd.ko.xz":                   "nbd",
		"kernel/drivers/md/dm-mod.ko.xz":                   "dm-mod",
		"kernel/drivers/md/dm-verity.ko.xz":                "dm-verity",
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko": "e1000",
		"kernel/fs/unused.ko":                              "unused",
		"modules.dep": "kernel/drivers/block/nbd.ko.xz:\nkernel/drivers/md/dm-mod.ko.xz:\n" +
			"kernel/drivers/md/dm-verity.ko.xz: kernel/drivers/md/dm-mod.ko.xz\n" +
			"kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\nkernel/fs/unused.ko:\n",
		"modules.alias":   "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\nalias fs-unused unused\n",
		"modules.builtin": "kernel/drivers/block/loop.ko\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testConfig() stage0.Config {
	return stage0.Config{Version: stage0.ConfigVersion, URL: "http://10.0.2.2/x", Size: 4096, SHA256: strings.Repeat("ab", 32)}
}

func TestWriteSegment(t *testing.T) {
	mods := fakeModules(t)
	var a, b bytes.Buffer
	res, err := WriteSegment(&a, SegmentOptions{Stage0: []byte("\x7fELF stage0"), Config: testConfig(), ModulesDir: mods})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteSegment(&b, SegmentOptions{Stage0: []byte("\x7fELF stage0"), Config: testConfig(), ModulesDir: mods}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) || res.Size != int64(a.Len()) {
		t.Fatal("two segments from the same input differ, or the size is wrong")
	}
	want := []string{
		"kernel/drivers/block/nbd.ko.xz", "kernel/drivers/md/dm-mod.ko.xz",
		"kernel/drivers/md/dm-verity.ko.xz", "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
	}
	if !slices.Equal(res.Modules, want) {
		t.Errorf("modules %q, want %q", res.Modules, want)
	}

	// An independent reader: GNU cpio lists and extracts the archive.
	cpio := testutil.Tool(t, "cpio", "cpio")
	zr, err := gzip.NewReader(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(cpio, "-i", "-d", "--quiet")
	cmd.Dir = out
	cmd.Stdin = zr
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, b)
	}
	conf, err := os.ReadFile(filepath.Join(out, "nbimg", "stage0.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := stage0.ParseConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KernelVersion != "6.1.0-test" || !slices.Equal(cfg.Modules, BaseModules) {
		t.Errorf("configuration %+v", cfg)
	}
	st, err := os.Stat(filepath.Join(out, "nbimg", "stage0"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("stage0 binary: %v %v", st, err)
	}
	modDir := filepath.Join(out, "nbimg", "lib", "modules", "6.1.0-test")
	ix, err := OpenModules(modDir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ix.Modules(), []string{"dm_mod", "dm_verity", "e1000", "nbd"}) {
		t.Errorf("modules.dep in the segment lists %q", ix.Modules())
	}
	if got := ix.Match("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"); !slices.Equal(got, []string{"e1000"}) {
		t.Errorf("modules.alias in the segment: %q", got)
	}
	if !ix.Builtin("loop") {
		t.Error("modules.builtin not copied")
	}
	if _, err := os.Stat(filepath.Join(modDir, "kernel/fs/unused.ko")); !os.IsNotExist(err) {
		t.Errorf("an unneeded module was copied: %v", err)
	}

	if _, err := os.Stat(filepath.Join(out, "nbimg", "ca.pem")); !os.IsNotExist(err) {
		t.Errorf("a CA bundle without https: %v", err)
	}

	// A module the configuration needs but the tree lacks is an error.
	if _, err := WriteSegment(&b, SegmentOptions{Config: testConfig(), ModulesDir: mods, Modules: []string{"nosuch"}}); err == nil {
		t.Error("a missing module was accepted")
	}
}

func TestAppendVerity(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	data := bytes.Repeat([]byte("squashfs-ish "), 100000) // not a multiple of 4096
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := AppendVerity(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if v.DataSize%4096 != 0 || v.DataSize < int64(len(data)) || st.Size() != v.Size {
		t.Errorf("data %d, size %d, file %d", v.DataSize, v.Size, st.Size())
	}
	padded := append(append([]byte(nil), data...), make([]byte, v.DataSize-int64(len(data)))...)
	s := sha256.Sum256(padded)
	if hex.EncodeToString(v.Tree.Salt) != hex.EncodeToString(SaltFor(s[:])) {
		t.Error("the salt is not derived from the image")
	}
	if out, ok := testutil.VerityVerify(t, p, p, v.Tree.RootHex(), v.DataSize); !ok {
		t.Errorf("veritysetup verify:\n%s", out)
	}
	u := UUIDFor(v.Tree.Salt)
	if u[6]>>4 != 4 || u[8]>>6 != 2 {
		t.Errorf("UUID %x is not version 4 / RFC 4122", u)
	}
}

// TestWriteSegmentCA: with a CA bundle, the segment holds it at
// stage0.CAPath and the configuration names it (https:// needs it).
func TestWriteSegmentCA(t *testing.T) {
	cfg := testConfig()
	cfg.URL = "https://10.0.2.2/x"
	var seg bytes.Buffer
	if _, err := WriteSegment(&seg, SegmentOptions{Config: cfg, ModulesDir: fakeModules(t)}); err == nil {
		t.Error("https:// without a CA bundle was accepted")
	}
	ca := []byte("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n")
	seg.Reset()
	if _, err := WriteSegment(&seg, SegmentOptions{Stage0: []byte("x"), Config: cfg, ModulesDir: fakeModules(t), CA: ca}); err != nil {
		t.Fatal(err)
	}
	cpio := testutil.Tool(t, "cpio", "cpio")
	zr, err := gzip.NewReader(&seg)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(cpio, "-i", "-d", "--quiet")
	cmd.Dir = out
	cmd.Stdin = zr
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, b)
	}
	got, err := os.ReadFile(filepath.Join(out, strings.TrimPrefix(stage0.CAPath, "/")))
	if err != nil || !bytes.Equal(got, ca) {
		t.Errorf("CA bundle in the segment: %q, %v", got, err)
	}
	conf, err := os.ReadFile(filepath.Join(out, strings.TrimPrefix(stage0.ConfigPath, "/")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := stage0.ParseConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if c.CAFile != stage0.CAPath {
		t.Errorf("configuration's ca_file %q, want %q", c.CAFile, stage0.CAPath)
	}
}
