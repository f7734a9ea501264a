package nixstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const (
	pA = "/nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-a"
	pB = "/nix/store/1b2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-b-1.0"
	pC = "/nix/store/2c2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-c.drv"
	h1 = "sha256:0jxq7cfj784p9x79yvx4d2iy18avkms0636mxmxzcyp2b3xynx4f"
)

func reg(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func TestParseRegistrationNormalises(t *testing.T) {
	// Unsorted, base16 and SRI hashes, a deriver, unsorted and repeated
	// references: what nix-store --dump-db and hand-written files contain.
	in := reg(
		pB, knownHex, "120", pC, "3", pB, pA, pA,
		pA, "sha256-jnTr+1jievZ77dUMA3SdW6Hgo2ikb59OT5egIx07uEs=", "8", "", "0",
	)
	paths, err := ParseRegistration(strings.NewReader(in), "reg")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteRegistration(&out, paths); err != nil {
		t.Fatal(err)
	}
	want := reg(
		pA, h1, "8", "", "0",
		pB, h1, "120", "", "2", pA, pB,
	)
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if paths[1].Deriver != pC {
		t.Errorf("deriver %q", paths[1].Deriver)
	}
	// Without a final newline it reads the same.
	if p2, err := ParseRegistration(strings.NewReader(strings.TrimSuffix(in, "\n")), "reg"); err != nil || len(p2) != 2 {
		t.Errorf("no final newline: %v", err)
	}
}

func TestWriteRegistrationEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRegistration(&b, nil); err != nil || b.Len() != 0 {
		t.Fatalf("empty closure: %q %v", b.String(), err)
	}
	if p, err := ParseRegistration(strings.NewReader(""), "reg"); err != nil || len(p) != 0 {
		t.Fatalf("empty file: %v %v", p, err)
	}
}

func TestParseRegistrationErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		line int
		msg  string
	}{
		{"empty path line", reg(""), 1, "empty line"},
		{"relative path", reg("nix/store/x", h1, "1", "", "0"), 1, "not an absolute"},
		{"no hash part", reg("/nix/store/foo", h1, "1", "", "0"), 1, "not <hash>-<name>"},
		{"bad hash part", reg("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", h1, "1", "", "0"), 1, "hash part"},
		{"bad name char", reg("/nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-a b", h1, "1", "", "0"), 1, "character"},
		{"path inside a store path", reg(pA+"/bin", h1, "1", "", "0"), 1, "not a store path"},
		{"two store dirs", reg(pA, h1, "1", "", "0", "/gnu/store/1b2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-b", h1, "1", "", "0"), 6, "store directory"},
		{"duplicate", reg(pA, h1, "1", "", "0", pA, h1, "1", "", "0"), 6, "listed twice (first on line 1)"},
		{"bad hash", reg(pA, "sha256:xyz", "1", "", "0"), 2, "NAR hash"},
		{"md5 hash", reg(pA, "md5:"+knownHex[:32], "1", "", "0"), 2, "unsupported hash type"},
		{"bad size", reg(pA, h1, "12k", "", "0"), 3, "not a decimal"},
		{"negative size", reg(pA, h1, "-1", "", "0"), 3, "not a decimal"},
		{"bad deriver", reg(pA, h1, "1", "x.drv", "0"), 4, "deriver"},
		{"bad count", reg(pA, h1, "1", "", "two"), 5, "reference count"},
		{"truncated at hash", pA + "\n", 2, "NAR hash of " + pA + " was expected"},
		{"truncated in references", reg(pA, h1, "1", "", "2", pA), 7, "reference 2 of 2"},
		{"bad reference", reg(pA, h1, "1", "", "1", "/nix/store/x"), 6, "reference of"},
		{"reference outside", reg(pA, h1, "1", "", "2", pA, pB), 7, "reference outside the closure: " + pB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRegistration(strings.NewReader(tc.in), "closure/registration")
			var re *RegistrationError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a RegistrationError", err)
			}
			if re.File != "closure/registration" || re.Line != tc.line || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q (line %d), want line %d and %q", err, re.Line, tc.line, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "closure/registration:") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
	_, err := ParseRegistration(strings.NewReader(reg(pA, h1, "1", "", "1", pB)), "r")
	if !errors.Is(err, ErrOutsideClosure) {
		t.Errorf("reference outside the closure: %v does not wrap ErrOutsideClosure", err)
	}
}

// FuzzParseRegistration checks that whatever parses writes out in the
// canonical form, and that the canonical form parses back to the same paths
// and is a fixed point of parse and write.
func FuzzParseRegistration(f *testing.F) {
	f.Add([]byte(reg(pA, h1, "8", "", "0")))
	f.Add([]byte(reg(pB, knownHex, "120", pC, "2", pB, pA, pA, "sha256-jnTr+1jievZ77dUMA3SdW6Hgo2ikb59OT5egIx07uEs=", "8", "", "1", pA)))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := ParseRegistration(bytes.NewReader(data), "fuzz")
		if err != nil {
			var re *RegistrationError
			if !errors.As(err, &re) || re.File != "fuzz" {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if err := WriteRegistration(&out, paths); err != nil {
			t.Fatalf("write after parse: %v", err)
		}
		again, err := ParseRegistration(bytes.NewReader(out.Bytes()), "again")
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, out.Bytes())
		}
		if len(again) != len(paths) {
			t.Fatalf("%d paths, then %d", len(paths), len(again))
		}
		for i := range paths {
			p, q := paths[i], again[i]
			if p.Path != q.Path || p.NarHash != q.NarHash || p.NarSize != q.NarSize || strings.Join(p.References, " ") != strings.Join(q.References, " ") {
				t.Fatalf("path %d: %+v, then %+v", i, p, q)
			}
		}
		var out2 bytes.Buffer
		if err := WriteRegistration(&out2, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatalf("write is not a fixed point:\n%s\n%s", out.Bytes(), out2.Bytes())
		}
		if len(paths) > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) || bytes.HasSuffix(out.Bytes(), []byte("\n\n\n")) {
			t.Fatalf("bad ending: %q", out.Bytes())
		}
	})
}
