package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbimg/nbimg/serve/tftp"
)

// bigFile writes a 100 MB pseudo-random file and returns its sha256.
func bigFile(t *testing.T, path string, size int) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for n := 0; n < size; n += len(buf) {
		r.Read(buf)
		b := buf[:min(len(buf), size-n)]
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// heapPeak samples the Go heap in use until stop is called and returns
// the peak.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

const loadSize = 100 << 20

// The TFTP window stays below the default socket receive buffer (208 KiB
// on Linux) so that loopback drops nothing.
var loadBlock, loadWindow = 65464, 2

// TestLoad: 50 TFTP transfers of a 100 MB file and 200 concurrent HTTP
// range readers, on loopback, against one server; every byte is checked
// and the heap must stay flat (well below one copy of the file).
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: not in -short")
	}
	root := t.TempDir()
	path := filepath.Join(root, "initrd")
	want := bigFile(t, path, loadSize)
	s, _ := running(t, Options{Dirs: []string{root}, MaxTFTPBlock: tftp.MaxBlockSize})
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	t.Run("tftp", func(t *testing.T) {
		stop := heapPeak()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := sha256.New()
				n, err := tftp.Get(ctx, s.Addr("tftp").String(), "initrd", loadBlock, loadWindow, h)
				if err != nil {
					errs <- fmt.Errorf("transfer %d: %w after %d bytes", i, err, n)
					return
				}
				if n != loadSize || !bytes.Equal(h.Sum(nil), want[:]) {
					errs <- fmt.Errorf("transfer %d: %d bytes, wrong content", i, n)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		el := time.Since(start)
		peak := stop()
		t.Logf("50 TFTP transfers of 100 MiB (blksize %d, windowsize %d): %.1fs, %.0f MiB/s in all; heap peak %.1f MiB (%.1f MiB before)",
			loadBlock, loadWindow, el.Seconds(), 50*100/el.Seconds(), float64(peak)/(1<<20), float64(base.HeapInuse)/(1<<20))
		if peak > base.HeapInuse+64<<20 {
			t.Errorf("heap grew by %d MiB", (peak-base.HeapInuse)>>20)
		}
	})

	t.Run("http", func(t *testing.T) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		stop := heapPeak()
		start := time.Now()
		url := "http://" + s.Addr("http").String() + "/initrd"
		var wg sync.WaitGroup
		var total atomic.Int64
		errs := make(chan error, 200)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}, Timeout: 2 * time.Minute}
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), 7))
				got := make([]byte, 32<<10)
				exp := make([]byte, 32<<10)
				for k := 0; k < 4; k++ {
					n := 1 + r.IntN(1<<20)
					off := r.IntN(loadSize - n + 1)
					req, err := http.NewRequest("GET", url, nil)
					if err != nil {
						errs <- err
						return
					}
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
					resp, err := client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					if resp.StatusCode != http.StatusPartialContent {
						resp.Body.Close()
						errs <- fmt.Errorf("reader %d: %s", i, resp.Status)
						return
					}
					// Compare in 32 KiB pieces so the readers hold little.
					for done := 0; done < n; {
						c := min(len(got), n-done)
						if _, err := io.ReadFull(resp.Body, got[:c]); err != nil {
							errs <- fmt.Errorf("reader %d: %w at %d+%d", i, err, off, done)
							break
						}
						if _, err := f.ReadAt(exp[:c], int64(off+done)); err != nil {
							errs <- err
							break
						}
						if !bytes.Equal(got[:c], exp[:c]) {
							errs <- fmt.Errorf("reader %d: wrong bytes at %d+%d", i, off, done)
							break
						}
						done += c
					}
					if extra, err := io.Copy(io.Discard, resp.Body); err != nil || extra != 0 {
						errs <- fmt.Errorf("reader %d: %d bytes past the range (%v)", i, extra, err)
					}
					resp.Body.Close()
					total.Add(int64(n))
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		el := time.Since(start)
		peak := stop()
		t.Logf("200 concurrent HTTP range readers, 4 ranges of up to 1 MiB each: %.1fs, %.0f MiB in all; heap peak %.1f MiB (%.1f MiB before)",
			el.Seconds(), float64(total.Load())/(1<<20), float64(peak)/(1<<20), float64(base.HeapInuse)/(1<<20))
		if peak > base.HeapInuse+64<<20 {
			t.Errorf("heap grew by %d MiB", (peak-base.HeapInuse)>>20)
		}
	})
}
