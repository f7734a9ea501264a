package serve

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"
)

// Handler returns the HTTP handler: GET /metrics, the iPXE scripts under
// /_/ipxe/<mac>, API files under /_/file/<id>, and every other path as a
// file of the roots (with range requests; no directory listings).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.m.WriteTo(w) //nolint:errcheck // the client went away
	})
	mux.HandleFunc("GET /_/ipxe/{mac}", s.serveScript)
	mux.HandleFunc("GET /_/file/{id}", s.serveAPIFile)
	mux.HandleFunc("/", s.serveFile)
	return s.logged(mux)
}

// countingWriter counts the body bytes written.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      atomic.Int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// ReadFrom keeps sendfile for file bodies.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(c.ResponseWriter, r)
	}
	c.n.Add(n)
	return n, err
}

func (s *Server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		cw := &countingWriter{ResponseWriter: w}
		s.m.add("nbimg_serve_active", 1, "proto", "http")
		defer s.m.add("nbimg_serve_active", -1, "proto", "http")
		h.ServeHTTP(cw, r)
		if r.URL.Path == "/metrics" {
			return
		}
		status := cw.status
		if status == 0 {
			status = http.StatusOK
		}
		var err error
		if status >= 400 {
			err = errors.New(http.StatusText(status))
		}
		sent := cw.n.Load()
		if err != nil {
			sent = 0 // error pages are not files
		}
		s.count("http", err, sent)
		lvl := s.log.Info
		if status >= 400 {
			lvl = s.log.Warn
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		lvl("http", "proto", "http", "client", host, "method", r.Method, "path", r.URL.Path,
			"range", r.Header.Get("Range"), "status", status, "bytes", cw.n.Load(), "duration", time.Since(start))
	})
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only server", http.StatusMethodNotAllowed)
		return
	}
	if sys := s.dynamicFor(r.URL.Path); sys != "" {
		if err := s.ensure(sys); err != nil {
			w.Header().Set("Retry-After", "10")
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	f, st, err := s.state().roots.open(r.URL.Path)
	if err != nil {
		switch {
		case errors.Is(err, ErrBadPath):
			http.Error(w, "bad path", http.StatusBadRequest)
		case errors.Is(err, fs.ErrNotExist):
			http.NotFound(w, r)
		default:
			http.Error(w, "cannot open", http.StatusForbidden)
		}
		return
	}
	defer f.Close()
	if strings.EqualFold(path.Ext(st.Name()), ".efi") {
		// UEFI HTTP boot clients take an EFI program by this type (the
		// UEFI specification's HTTP boot chapter), else by the extension.
		w.Header().Set("Content-Type", "application/efi")
	}
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}

func (s *Server) base(r *http.Request) string {
	if r.Host != "" {
		return "http://" + r.Host
	}
	return s.httpBase
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request) {
	mac, err := net.ParseMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, "bad MAC address", http.StatusBadRequest)
		return
	}
	script, err := s.ipxeScript(r.Context(), s.base(r), mac.String())
	if err != nil {
		if errors.Is(err, errNoMachine) {
			http.NotFound(w, r)
			return
		}
		s.log.Warn("ipxe script", "mac", mac.String(), "err", err)
		http.Error(w, "cannot make the script", http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, script) //nolint:errcheck // the client went away
}

func (s *Server) serveAPIFile(w http.ResponseWriter, r *http.Request) {
	u, ok := s.fileURL(r.PathValue("id"))
	if !ok || !(strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) {
		http.NotFound(w, r)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
	if err != nil {
		http.Error(w, "bad file URL", http.StatusBadGateway)
		return
	}
	resp, err := s.client.Do(req)
	if err != nil {
		http.Error(w, "fetching the file failed", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, "the API's file server said "+resp.Status, http.StatusBadGateway)
		return
	}
	if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", resp.Header.Get("Content-Length"))
	}
	io.Copy(w, resp.Body) //nolint:errcheck // the client or the origin went away
}
