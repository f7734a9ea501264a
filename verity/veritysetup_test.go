package verity

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

func uuidString(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// TestVeritysetup checks nbimg's trees against cryptsetup's: veritysetup
// verify accepts them (and rejects a flipped data byte), and veritysetup
// format writes the same root hash and the same hash-area bytes for the
// same salt and UUID, both appended to the data and in a file of its own.
func TestVeritysetup(t *testing.T) {
	testutil.VeritySetup(t)
	dir := t.TempDir()
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	salt := bytes.Repeat([]byte{0x5a, 0xa5}, 16)
	sizes := []int{1, 2, 128, 129, 128*128 + 3}
	if testing.Short() {
		sizes = []int{1, 129}
	}
	for _, blocks := range sizes {
		for _, s := range [][]byte{salt, nil} {
			name := fmt.Sprintf("%dblocks-salt%d", blocks, len(s))
			data := testData(blocks, byte(blocks))
			tr, err := Compute(data, s, uuid)
			if err != nil {
				t.Fatal(err)
			}
			// Appended: data then hash area, one file.
			img := filepath.Join(dir, name+".img")
			if err := os.WriteFile(img, append(append([]byte(nil), data...), tr.HashArea()...), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, ok := testutil.VerityVerify(t, img, img, tr.RootHex(), tr.DataSize()); !ok {
				t.Errorf("%s: veritysetup verify rejected the appended tree:\n%s", name, out)
			}
			// Beside: a hash file of its own.
			hashFile := filepath.Join(dir, name+".hash")
			dataFile := filepath.Join(dir, name+".data")
			if err := os.WriteFile(dataFile, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(hashFile, tr.HashArea(), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, ok := testutil.VerityVerify(t, dataFile, hashFile, tr.RootHex(), 0); !ok {
				t.Errorf("%s: veritysetup verify rejected the separate tree:\n%s", name, out)
			}

			// veritysetup format writes the same bytes.
			ref := filepath.Join(dir, name+".ref")
			saltHex := tr.SaltHex()
			root := testutil.VerityFormat(t, dataFile, ref, saltHex, uuidString(uuid), 0)
			if root != tr.RootHex() {
				t.Errorf("%s: root %s, veritysetup format says %s", name, tr.RootHex(), root)
			}
			got, err := os.ReadFile(ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tr.HashArea()) {
				t.Errorf("%s: hash area differs from veritysetup format's (%d vs %d bytes)%s",
					name, len(tr.HashArea()), len(got), firstDiff(tr.HashArea(), got))
			}

			// Negative control: one flipped data byte is refused.
			bad := append([]byte(nil), data...)
			bad[len(bad)/2] ^= 0x40
			if err := os.WriteFile(dataFile, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, ok := testutil.VerityVerify(t, dataFile, hashFile, tr.RootHex(), 0); ok {
				t.Errorf("%s: veritysetup verify accepted a corrupted data block", name)
			}
		}
	}
}

func firstDiff(a, b []byte) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("; first difference at byte %d", i)
		}
	}
	return ""
}
