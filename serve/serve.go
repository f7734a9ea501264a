// Package serve network-boots machines from the directories nbimg writes:
// one process answers proxy DHCP (serve/dhcp), TFTP (serve/tftp), HTTP
// (net/http) and NBD (serve/nbd) from the same read-only roots.
//
// A file name from any client is cleaned (CleanName) and opened through
// an os.Root per served directory, searched in order, so neither "..",
// absolute names nor symbolic links reach outside the roots. Clients are
// served one per goroutine with deadlines and bounded buffers: a client
// that misbehaves loses its own transfer and leaves one log line. Logs are
// structured (log/slog), one line per client request; GET /metrics has
// counters in the Prometheus text format. Reload (on SIGHUP in nbimg
// serve) reopens the roots and the machine map without dropping running
// transfers; canceling Run's context shuts everything down and waits.
//
// Which file a DHCP client gets depends on its architecture (see Decide
// and the *Files lists; a UKI named nixos.efi or uki.efi goes only to
// clients of the architecture its manifest.json or PE header names); iPXE clients get a script over HTTP that chains
// the artifact directory's netboot.ipxe with the machine's extra command
// line, or, with an API URL, the kernel and initrds pixiecore's API names.
//
// Dynamic mode (Options.Systems): a system is built by its Build function
// on the first request for it, into StateDir/NAME, and rebuilt when its
// source link moves; meanwhile iPXE clients get a script that waits.
//
// Full DHCP (Options.DHCPRange) hands out addresses of a range on the
// served network, leases kept in memory (dhcp.Pool); without it the
// network's own DHCP server gives addresses and nbimg only adds the boot
// answers (proxy DHCP).
//
// Not done here: DHCP relays, TLS, NBD block status.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/nbimg/nbimg/serve/dhcp"
	"github.com/nbimg/nbimg/serve/nbd"
	"github.com/nbimg/nbimg/serve/tftp"
)

// Options configure a Server. An empty address disables its service.
type Options struct {
	// Dirs are the served roots, searched in order.
	Dirs []string
	// HTTPAddr, TFTPAddr, NBDAddr: listening addresses ("host:port").
	HTTPAddr, TFTPAddr, NBDAddr string
	// DHCPAddr and PXEAddr: the proxy DHCP ports (":67" and ":4011").
	DHCPAddr, PXEAddr string
	// Advertise is the IPv4 address clients are told to fetch from (DHCP
	// server identifier, TFTP server, HTTP URLs). Needed with DHCP.
	Advertise net.IP
	// DHCPRange, when set (START,END[,MASK], see dhcp.ParseRange), makes
	// the DHCP port a full DHCP server handing out those addresses, with
	// leases of LeaseTime (default one hour) kept in memory.
	DHCPRange string
	LeaseTime time.Duration
	// DHCPRouter and DHCPDNS, with DHCPRange, are announced as the
	// default gateway and the name servers.
	DHCPRouter net.IP
	DHCPDNS    []net.IP
	// Machines is a machine map file (see LoadMachines); API a pixiecore
	// API server base URL.
	Machines string
	API      string
	// Systems are built on first request into StateDir/NAME (dynamic
	// mode); StateDir is then served first.
	Systems  []System
	StateDir string
	// MaxTFTPBlock bounds the TFTP block size (default 1468: one
	// Ethernet frame).
	MaxTFTPBlock int
	Logger       *slog.Logger
	// Net opens the sockets (default: the host's network stack).
	Net Network
}

// Network opens listening sockets.
type Network interface {
	Listen(ctx context.Context, network, addr string) (net.Listener, error)
	ListenPacket(ctx context.Context, network, addr string) (net.PacketConn, error)
}

// HostNetwork opens sockets with a net.ListenConfig, bound to Interface
// when it is set (SO_BINDTODEVICE), with SO_BROADCAST on UDP sockets.
type HostNetwork struct{ Interface string }

// state is what Reload replaces.
type state struct {
	roots    *roots
	machines map[string]Machine
}

// Server serves the roots. Create with New; run with Run.
type Server struct {
	opts    Options
	log     *slog.Logger
	cur     atomic.Pointer[state]
	m       *metrics
	client  *http.Client
	filesMu sync.Mutex
	files   map[string]string

	httpBase string // http://advertise:port, set by Run
	addrs    map[string]net.Addr
	addrsMu  sync.Mutex
	started  chan struct{}

	pool *dhcp.Pool // full DHCP; nil: proxy only

	dyn    map[string]*dynSystem
	runCtx context.Context
	builds sync.WaitGroup
}

// New checks the options and opens the roots.
func New(opts Options) (*Server, error) {
	if len(opts.Dirs) == 0 {
		return nil, errors.New("serve: no directories to serve")
	}
	if (opts.DHCPAddr != "" || opts.PXEAddr != "") && opts.Advertise.To4() == nil {
		return nil, errors.New("serve: proxy DHCP needs the IPv4 address to announce (--address, or --interface with an IPv4 address)")
	}
	if err := checkSystems(opts.Systems, opts.StateDir); err != nil {
		return nil, err
	}
	if len(opts.Systems) > 0 {
		if err := ensureStateDir(opts.StateDir); err != nil {
			return nil, fmt.Errorf("serve: state directory: %w", err)
		}
	}
	if opts.MaxTFTPBlock == 0 {
		opts.MaxTFTPBlock = 1468
	}
	if opts.Net == nil {
		opts.Net = HostNetwork{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, m: newMetrics(), client: &http.Client{Timeout: 10 * time.Minute},
		files: map[string]string{}, addrs: map[string]net.Addr{}, started: make(chan struct{}),
		dyn: map[string]*dynSystem{}, runCtx: context.Background()}
	for _, sys := range opts.Systems {
		s.dyn[sys.Name] = &dynSystem{System: sys}
	}
	if opts.DHCPRange != "" {
		if opts.DHCPAddr == "" {
			return nil, errors.New("serve: a DHCP range needs the DHCP service")
		}
		start, end, mask, err := dhcp.ParseRange(opts.DHCPRange)
		if err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
		if s.pool, err = dhcp.NewPool(opts.Advertise, dhcp.PoolOptions{Start: start, End: end, Mask: mask, LeaseTime: opts.LeaseTime,
			Router: opts.DHCPRouter, DNS: opts.DHCPDNS}); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

func (s *Server) state() *state { return s.cur.Load() }

func (s *Server) load() (*state, error) {
	dirs := s.opts.Dirs
	if len(s.opts.Systems) > 0 {
		dirs = append([]string{s.opts.StateDir}, dirs...)
	}
	r, err := openRoots(dirs)
	if err != nil {
		return nil, err
	}
	st := &state{roots: r, machines: map[string]Machine{}}
	if s.opts.Machines != "" {
		m, err := LoadMachines(s.opts.Machines)
		if err != nil {
			r.close()
			return nil, err
		}
		st.machines = m
	}
	return st, nil
}

// Reload reopens the roots and rereads the machine map. On error the old
// configuration stays. Transfers already running keep their open files.
func (s *Server) Reload() error {
	st, err := s.load()
	if err != nil {
		s.m.add("nbimg_serve_reloads_total", 1, "result", "error")
		s.log.Error("reload failed, keeping the old configuration", "err", err)
		return err
	}
	old := s.cur.Swap(st)
	// Lookups that started on the old roots finish within a moment.
	time.AfterFunc(30*time.Second, old.roots.close)
	s.m.add("nbimg_serve_reloads_total", 1, "result", "ok")
	s.log.Info("reloaded", "dirs", s.opts.Dirs, "machines", len(st.machines))
	return nil
}

// Addr returns the address a service listens on ("http", "tftp", "nbd",
// "dhcp", "pxe") once Run has started it, or nil.
func (s *Server) Addr(service string) net.Addr {
	s.addrsMu.Lock()
	defer s.addrsMu.Unlock()
	return s.addrs[service]
}

// Started is closed once every service is listening.
func (s *Server) Started() <-chan struct{} { return s.started }

// Run listens on the configured addresses and serves until ctx ends, then
// shuts down and waits for running clients (HTTP gets 5 seconds).
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer s.state().roots.close()
	s.runCtx = ctx
	defer s.builds.Wait()

	var (
		wg   sync.WaitGroup
		errs = make(chan error, 8)
	)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- fmt.Errorf("serve: %s: %w", name, err)
				cancel(err)
			}
		}()
	}
	listenErr := func(err error) error {
		cancel(err)
		wg.Wait()
		return err
	}
	setAddr := func(k string, a net.Addr) {
		s.addrsMu.Lock()
		s.addrs[k] = a
		s.addrsMu.Unlock()
	}

	if s.opts.HTTPAddr != "" {
		l, err := s.opts.Net.Listen(ctx, "tcp", s.opts.HTTPAddr)
		if err != nil {
			return listenErr(fmt.Errorf("serve: http: %w", err))
		}
		setAddr("http", l.Addr())
		host := ""
		if s.opts.Advertise != nil {
			host = s.opts.Advertise.String()
		} else if ta, ok := l.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
			host = ta.IP.String()
		}
		if host != "" {
			s.httpBase = "http://" + net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		}
		hs := &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		run("http", func() error {
			err := hs.Serve(l)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			if err := hs.Shutdown(sctx); err != nil {
				hs.Close()
			}
		}()
	}
	if s.opts.TFTPAddr != "" {
		pc, err := s.opts.Net.ListenPacket(ctx, "udp4", s.opts.TFTPAddr)
		if err != nil {
			return listenErr(fmt.Errorf("serve: tftp: %w", err))
		}
		setAddr("tftp", pc.LocalAddr())
		ts := &tftp.Server{
			Opener:       tftp.OpenerFunc(s.openTFTP),
			Logger:       s.log,
			MaxBlockSize: s.opts.MaxTFTPBlock,
			ListenPacket: func(network, addr string) (net.PacketConn, error) {
				return s.opts.Net.ListenPacket(ctx, "udp4", addr)
			},
			Done: func(t tftp.Transfer) {
				s.count("tftp", t.Err, t.Bytes)
			},
		}
		run("tftp", func() error { return ts.Serve(ctx, pc) })
	}
	if s.opts.NBDAddr != "" {
		l, err := s.opts.Net.Listen(ctx, "tcp", s.opts.NBDAddr)
		if err != nil {
			return listenErr(fmt.Errorf("serve: nbd: %w", err))
		}
		setAddr("nbd", l.Addr())
		ns := &nbd.Server{Exports: exports{s}, Logger: s.log, Done: func(x nbd.Session) { s.count("nbd", x.Err, x.Bytes) }}
		run("nbd", func() error { return ns.Serve(ctx, l) })
	}
	for _, d := range []struct {
		name, addr string
		port       int
	}{{"dhcp", s.opts.DHCPAddr, 67}, {"pxe", s.opts.PXEAddr, 4011}} {
		if d.addr == "" {
			continue
		}
		pc, err := s.opts.Net.ListenPacket(ctx, "udp4", d.addr)
		if err != nil {
			return listenErr(fmt.Errorf("serve: %s: %w", d.name, err))
		}
		setAddr(d.name, pc.LocalAddr())
		ds := &dhcp.Server{ServerIP: s.opts.Advertise, Decider: s, Logger: s.log, Done: func(a dhcp.Answer) {
			if a.Ignored == nil && a.Reply != 0 {
				s.m.add("nbimg_serve_dhcp_leases_total", 1, "reply", a.Reply.String())
			}
			if a.Ignored == nil && a.Client.Class != dhcp.ClassNone && a.Reply != dhcpv4.MessageTypeNak {
				s.m.add("nbimg_serve_dhcp_answers_total", 1, "class", a.Client.Class.String(), "ipxe", strconv.FormatBool(a.Client.IPXE))
			}
		}}
		if d.name == "dhcp" {
			ds.Pool = s.pool
		}
		port := d.port
		run(d.name, func() error { return ds.Serve(ctx, pc, port) })
	}
	close(s.started)
	s.log.Info("serving", "dirs", s.opts.Dirs, "http", s.Addr("http"), "tftp", s.Addr("tftp"), "nbd", s.Addr("nbd"),
		"dhcp", s.Addr("dhcp"), "pxe", s.Addr("pxe"), "advertise", s.opts.Advertise)
	<-ctx.Done()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (s *Server) count(proto string, err error, bytes int64) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.m.add("nbimg_serve_requests_total", 1, "proto", proto, "result", result)
	s.m.add("nbimg_serve_bytes_total", float64(bytes), "proto", proto)
}

func (s *Server) openTFTP(_ context.Context, _ net.Addr, name string) (tftp.File, int64, error) {
	if sys := s.dynamicFor(name); sys != "" {
		if err := s.ensure(sys); err != nil {
			return nil, 0, err
		}
	}
	f, st, err := s.state().roots.open(name)
	if err != nil {
		if errors.Is(err, ErrBadPath) {
			return nil, 0, fmt.Errorf("%w (%w)", fs.ErrNotExist, err)
		}
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// exports serves regular files of the roots over NBD: the name is a path
// in the roots; "" is the first nix-store.squashfs found.
type exports struct{ s *Server }

// StoreImage is the file name of nbimg's store images.
const StoreImage = "nix-store.squashfs"

func (e exports) Open(_ context.Context, name string) (nbd.Export, error) {
	r := e.s.state().roots
	if name == "" {
		found := r.find(StoreImage, 4, 1)
		if len(found) == 0 {
			return nil, fmt.Errorf("%w: no %s in the roots for the default export", nbd.ErrUnknownExport, StoreImage)
		}
		name = found[0]
	}
	f, st, err := r.open(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", nbd.ErrUnknownExport, err)
	}
	return &fileExport{File: f, size: st.Size()}, nil
}

func (e exports) List(context.Context) ([]string, error) {
	return e.s.state().roots.find(StoreImage, 4, 256), nil
}

type fileExport struct {
	*os.File
	size int64
}

func (f *fileExport) Size() int64 { return f.size }

// InterfaceIPv4 returns the first IPv4 address of a network interface.
func InterfaceIPv4(name string) (net.IP, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("serve: interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("serve: interface %s: %w", name, err)
	}
	for _, a := range addrs {
		if in, ok := a.(*net.IPNet); ok && in.IP.To4() != nil {
			return in.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("serve: interface %s has no IPv4 address", name)
}
