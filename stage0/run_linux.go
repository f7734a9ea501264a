package stage0

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nbimg/nbimg/stage0/dhcp"
	"github.com/nbimg/nbimg/stage0/dm"
	"github.com/nbimg/nbimg/stage0/fetch"
	"github.com/nbimg/nbimg/stage0/kmod"
	"github.com/nbimg/nbimg/stage0/nbd"
)

// Environment of the NBD helper process (see NBDHelper).
const (
	envNBDDevice = "NBIMG_STAGE0_NBD_DEVICE"
	envNBDMode   = "NBIMG_STAGE0_NBD_MODE" // "ioctl" or "reconnect"
	envNBDExport = "NBIMG_STAGE0_NBD_EXPORT"
	envURL       = "NBIMG_STAGE0_URL"
	envFamily    = "NBIMG_STAGE0_NBD_FAMILY"
	envDNS       = "NBIMG_STAGE0_DNS"
	// nbdHelperName is the helper's argv[0]: systemd spares processes
	// whose argv[0] starts with '@' when it kills everything at shutdown,
	// as the root file system still needs them.
	nbdHelperName = "@nbimg-stage0-nbd"
	nbdDevice     = "/dev/nbd0"
	nbdIndex      = 0
	verityName    = "nbimg-store"
	// nbdRequestTimeout: a request unanswered this long marks the
	// connection dead (the kernel then queues it again and waits for a
	// new connection).
	nbdRequestTimeout = 15
)

// Stage0 carries the console and the configuration through the steps.
type Stage0 struct {
	Cfg     *Config
	URL     StoreURL
	GiveUp  time.Duration
	Console io.Writer
	Debug   bool

	mounted []string
	dns     []netip.AddrPort // the lease's DNS servers

}

func (s *Stage0) logf(format string, args ...any) {
	fmt.Fprintf(s.Console, "nbimg stage 0: "+format+"\n", args...)
}

// IsNBDHelper reports whether this process is the NBD helper that
// attachNBD starts.
func IsNBDHelper() bool { return os.Getenv(envNBDDevice) != "" }

// NBDHelper is the helper's main. In "reconnect" mode (the kernel's
// netlink interface) it waits for the kernel's link-dead notifications on
// the subscribed netlink socket inherited as fd 3 and gives the device a
// new connection each time; in "ioctl" mode it hands fd 3 (the negotiated
// connection) to the kernel and serves the device until the connection
// ends.
func NBDHelper() error {
	dev := os.Getenv(envNBDDevice)
	var size uint64
	var flags uint16
	if _, err := fmt.Sscanf(os.Getenv(envNBDExport), "%d %d", &size, &flags); err != nil {
		return fmt.Errorf("nbd helper: %w", err)
	}
	url := os.Getenv(envURL)
	if r := Resolver(parseDNS(os.Getenv(envDNS))); r != nil {
		net.DefaultResolver = r
	}
	if os.Getenv(envNBDMode) != "reconnect" {
		err := nbd.Serve(dev, os.NewFile(3, "nbd-socket"), nbd.Export{Size: size, Flags: flags})
		fmt.Fprintf(os.Stdout, "nbimg stage 0: the NBD connection to %s ended (%v): reads of the store fail from now on\n", url, err)
		return nil
	}
	var fam uint16
	if _, err := fmt.Sscanf(os.Getenv(envFamily), "%d", &fam); err != nil {
		return fmt.Errorf("nbd helper: %w", err)
	}
	u, err := ParseURL(url)
	if err != nil {
		return err
	}
	// Reconnecting never gives up: the kernel's dead-connection timeout
	// decides how long reads wait.
	s := &Stage0{Cfg: &Config{URL: url, Size: int64(size)}, URL: u, Console: os.Stdout}
	events := nbd.NetlinkFromFile(os.NewFile(3, "nbd-netlink"), fam)
	for {
		if err := events.WaitLinkDead(nbdIndex); err != nil {
			s.logf("watching the NBD connection: %v", err)
			return err
		}
		s.logf("lost the connection to %s: reconnecting %s", url, dev)
		for !s.reconnect() {
			time.Sleep(Backoff(3))
		}
	}
}

// reconnect gives the device a new connection; false: try again.
func (s *Stage0) reconnect() bool {
	sock, _, err := s.nbdConnect(context.Background())
	if err != nil {
		s.logf("%v", err)
		return false
	}
	defer sock.Close()
	nl, err := nbd.OpenNetlink()
	if err != nil {
		s.logf("%v", err)
		return false
	}
	defer nl.Close()
	if err := nl.Reconfigure(nbdIndex, sock); err != nil {
		s.logf("%v", err)
		return false
	}
	s.logf("%s reconnected to %s", nbdDevice, s.Cfg.URL)
	return true
}

// Main runs stage 0 as PID 1 and, on success, does not return: it execs
// the system's init. args are the process's arguments (the kernel
// command line's leftovers), kept for init.
func Main(args []string) error {
	s := &Stage0{Console: os.Stdout}
	if err := s.mountBasics(); err != nil {
		return err
	}
	raw, err := os.ReadFile(ConfigPath)
	if err != nil {
		return fmt.Errorf("no configuration: %w", err)
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		return err
	}
	s.Cfg = cfg
	s.GiveUp = cfg.GiveUp()
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	o, err := ParseCmdline(string(cmdline))
	if err != nil {
		return err
	}
	if err := o.CheckRootHash(cfg); err != nil {
		return err
	}
	if o.URL != "" {
		cfg.URL = o.URL
	}
	if o.GiveUp != nil {
		s.GiveUp = *o.GiveUp
	}
	s.Debug = o.Debug
	if s.URL, err = ParseURL(cfg.URL); err != nil {
		return err
	}
	if s.URL.Scheme == "nbd" && cfg.Verity == nil {
		return fmt.Errorf("%s: this image has no dm-verity parameters for NBD", cfg.URL)
	}
	ctx := context.Background()
	if err := s.loadModules(); err != nil {
		return err
	}
	if err := s.network(ctx); err != nil {
		return err
	}
	switch s.URL.Scheme {
	case "nbd":
		err = s.attachNBD(ctx)
	default:
		err = s.download(ctx)
	}
	if err != nil {
		return err
	}
	s.cleanup()
	init := cfg.InitPath()
	argv := append([]string{init}, args[1:]...)
	s.logf("starting %s", init)
	if err := unix.Exec(init, argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", init, err)
	}
	return nil
}

func (s *Stage0) mountBasics() error {
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("%s: %w", m.dir, err)
		}
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.fs, m.dir, err)
		}
		s.mounted = append(s.mounted, m.dir)
	}
	return nil
}

// cleanup unmounts what stage 0 mounted, so the system's stage 1 finds
// the initramfs as the kernel left it. /dev is detached lazily: the NBD
// helper keeps its device open.
func (s *Stage0) cleanup() {
	for i := len(s.mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(s.mounted[i], unix.MNT_DETACH); err != nil {
			s.logf("unmounting %s: %v", s.mounted[i], err)
		}
	}
}

func (s *Stage0) loadModules() error {
	dir := filepath.Join(ModulesDir, s.Cfg.KernelVersion)
	ix, err := openIndex(dir)
	if err != nil {
		return err
	}
	files, err := ix.Order(s.Cfg.Modules...)
	if err != nil {
		return fmt.Errorf("kernel module missing from the initrd: %w", err)
	}
	loaded := map[string]bool{}
	load := func(files []string) error {
		for _, f := range files {
			if loaded[f] {
				continue
			}
			loaded[f] = true
			if err := kmod.Load(filepath.Join(dir, f)); err != nil {
				return err
			}
			if s.Debug {
				s.logf("loaded %s", kmod.Name(f))
			}
		}
		return nil
	}
	if err := load(files); err != nil {
		return err
	}
	// Drivers for the hardware: loading a bus driver (virtio_pci) makes
	// new devices appear, so repeat until nothing new matches.
	for round := 0; round < 5; round++ {
		aliases, err := kmod.Modaliases()
		if err != nil {
			return err
		}
		var names []string
		for _, a := range aliases {
			names = append(names, ix.Match(a)...)
		}
		sort.Strings(names)
		names = slices.Compact(names)
		files, err := ix.Order(names...)
		if err != nil {
			return err
		}
		fresh := slices.DeleteFunc(files, func(f string) bool { return loaded[f] })
		if len(fresh) == 0 {
			break
		}
		if err := load(fresh); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func openIndex(dir string) (*kmod.Index, error) {
	open := func(name string, need bool) (io.Reader, func(), error) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			if !need && errors.Is(err, os.ErrNotExist) {
				return nil, func() {}, nil
			}
			return nil, nil, fmt.Errorf("kernel modules: %w", err)
		}
		return f, func() { f.Close() }, nil
	}
	dep, c1, err := open("modules.dep", true)
	if err != nil {
		return nil, err
	}
	defer c1()
	alias, c2, err := open("modules.alias", false)
	if err != nil {
		return nil, err
	}
	defer c2()
	builtin, c3, err := open("modules.builtin", false)
	if err != nil {
		return nil, err
	}
	defer c3()
	return kmod.Parse(dep, alias, builtin)
}

// interfaces lists the network interfaces other than loopback.
func interfaces() []string {
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.Name() != "lo" {
			out = append(out, e.Name())
		}
	}
	return out
}

func (s *Stage0) network(ctx context.Context) error {
	var ifs []string
	for i := 0; i < 50; i++ {
		if ifs = interfaces(); len(ifs) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(ifs) == 0 {
		return errors.New("no network interface: no NIC, or its driver is not among the initrd's modules")
	}
	if err := dhcp.Up("lo"); err != nil {
		s.logf("%v", err)
	}
	for _, i := range ifs {
		if err := dhcp.Up(i); err != nil {
			return err
		}
	}
	start := time.Now()
	for {
		for _, i := range ifs {
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			l, err := dhcp.Obtain(c, i)
			cancel()
			if err != nil {
				s.logf("no DHCP answer on %s", i)
				continue
			}
			if err := dhcp.Configure(i, l); err != nil {
				return err
			}
			s.logf("%s: %s (router %v, server %v, DNS %v)", i, l.Prefix(), l.Router, l.ServerID, l.DNS)
			for _, a := range l.DNS {
				s.dns = append(s.dns, netip.AddrPortFrom(a, 53))
			}
			if r := Resolver(s.dns); r != nil {
				net.DefaultResolver = r
			}
			return nil
		}
		if s.GiveUp > 0 && time.Since(start) > s.GiveUp {
			return fmt.Errorf("no DHCP answer on %s after %s", strings.Join(ifs, ", "), s.GiveUp)
		}
	}
}

// dial connects to addr, retrying with backoff and a console line every
// few seconds until the give-up time.
func (s *Stage0) dial(ctx context.Context, addr string) (net.Conn, error) {
	start := time.Now()
	var last time.Time
	for attempt := 0; ; attempt++ {
		c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		if s.GiveUp > 0 && time.Since(start) > s.GiveUp {
			return nil, fmt.Errorf("gave up on %s after %s: %w", s.Cfg.URL, s.GiveUp, err)
		}
		if time.Since(last) >= 5*time.Second {
			s.logf("waiting for %s: %v", s.Cfg.URL, err)
			last = time.Now()
		}
		time.Sleep(Backoff(attempt))
	}
}

// errWrongExport: the server serves an export of another size.
var errWrongExport = errors.New("wrong image")

// nbdConnect connects to the NBD server and negotiates the export,
// retrying (with a console line every few seconds) until the give-up
// time, and returns the connection as a file.
func (s *Stage0) nbdConnect(ctx context.Context) (*os.File, nbd.Export, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		conn, err := s.dial(ctx, s.URL.Addr)
		if err != nil {
			return nil, nbd.Export{}, err
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck // TCP supports deadlines
		ex, err := nbd.Handshake(conn, s.URL.Export)
		if err == nil && int64(ex.Size) != s.Cfg.Size {
			err = fmt.Errorf("the export is %d bytes, the initrd expects %d: %w", ex.Size, s.Cfg.Size, errWrongExport)
		}
		if err == nil {
			conn.SetDeadline(time.Time{}) //nolint:errcheck // as above
			f, ferr := conn.(*net.TCPConn).File()
			conn.Close()
			if ferr != nil {
				return nil, ex, fmt.Errorf("nbd: %w", ferr)
			}
			return f, ex, nil
		}
		conn.Close()
		if errors.Is(err, errWrongExport) || (s.GiveUp > 0 && time.Since(start) > s.GiveUp) {
			return nil, nbd.Export{}, fmt.Errorf("%s: %w", s.Cfg.URL, err)
		}
		// A server that is starting or restarting may accept and then
		// drop connections: try again.
		s.logf("waiting for %s: %v", s.Cfg.URL, err)
		time.Sleep(Backoff(attempt))
	}
}

// deadConnSeconds is how long the kernel holds I/O while the connection
// is down: the give-up time, or ten years for "forever".
func (s *Stage0) deadConnSeconds() uint64 {
	if s.GiveUp <= 0 {
		return 10 * 365 * 24 * 3600
	}
	return uint64(max(s.GiveUp/time.Second, 1))
}

func (s *Stage0) attachNBD(ctx context.Context) error {
	sock, ex, err := s.nbdConnect(ctx)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("nbd: %w", err)
	}
	env := []string{envNBDDevice + "=" + nbdDevice, fmt.Sprintf("%s=%d %d", envNBDExport, ex.Size, ex.Flags), envURL + "=" + s.Cfg.URL, envDNS + "=" + formatDNS(s.dns)}
	helper := &exec.Cmd{Path: self, Args: []string{nbdHelperName}, Stdout: os.Stdout, Stderr: os.Stderr}
	events, fam, err := s.netlinkConnect(sock, ex)
	if err == nil {
		defer events.Close()
		helper.Env = append(env, envNBDMode+"=reconnect", envFamily+"="+strconv.Itoa(int(fam)))
		helper.ExtraFiles = []*os.File{events}
		sock.Close()
		s.logf("%s: the kernel re-establishes lost connections (I/O waits up to %ds)", nbdDevice, s.deadConnSeconds())
	} else {
		s.logf("%v: using the ioctl interface, which does not re-establish a lost connection", err)
		helper.Env = append(env, envNBDMode+"=ioctl")
		helper.ExtraFiles = []*os.File{sock}
		defer sock.Close()
	}
	if err := helper.Start(); err != nil {
		return fmt.Errorf("starting the NBD helper: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- helper.Wait() }()
	for i := 0; !nbd.Connected(nbdDevice); i++ {
		select {
		case err := <-exited:
			return fmt.Errorf("the NBD helper ended: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if i > 100 {
			return fmt.Errorf("%s did not come up", nbdDevice)
		}
	}
	s.logf("%s attached to %s (%d MiB)", nbdDevice, s.Cfg.URL, ex.Size>>20)

	devNum, err := os.ReadFile("/sys/block/" + filepath.Base(nbdDevice) + "/dev")
	if err != nil {
		return fmt.Errorf("nbd: %w", err)
	}
	dev := strings.TrimSpace(string(devNum))
	p := *s.Cfg.Verity
	params, err := p.Table(dev, dev)
	if err != nil {
		return err
	}
	major, minor, err := dm.Create(verityName, dm.FlagReadOnly, dm.Target{Length: p.Sectors(), Type: "verity", Params: params})
	if err != nil {
		return err
	}
	target := s.Cfg.ImageTarget()
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", target, err)
	}
	if err := unix.Mknod(target, unix.S_IFBLK|0o400, int(unix.Mkdev(major, minor))); err != nil {
		return fmt.Errorf("creating %s: %w", target, err)
	}
	s.logf("%s is dm-verity over %s (root hash %s)", target, nbdDevice, p.RootHex)
	return nil
}

// netlinkConnect connects the device through the kernel's netlink
// interface with a dead-connection timeout, and returns a netlink socket
// subscribed to link-dead notifications (joined before the connection
// exists, so none is missed) for the reconnecting helper, with the nbd
// family's id.
func (s *Stage0) netlinkConnect(sock *os.File, ex nbd.Export) (*os.File, uint16, error) {
	events, err := nbd.OpenNetlink()
	if err != nil {
		return nil, 0, err
	}
	defer events.Close()
	if err := events.Subscribe(); err != nil {
		return nil, 0, err
	}
	cmd, err := nbd.OpenNetlink()
	if err != nil {
		return nil, 0, err
	}
	defer cmd.Close()
	err = cmd.Connect(sock, ex, nbd.ConnectOptions{Index: nbdIndex, TimeoutSeconds: nbdRequestTimeout, DeadConnSeconds: s.deadConnSeconds()})
	if err != nil {
		return nil, 0, err
	}
	return events.File()
}

func (s *Stage0) download(ctx context.Context) error {
	var roots *x509.CertPool
	if s.URL.Scheme == "https" {
		if s.Cfg.CAFile == "" {
			return fmt.Errorf("%s: %w", s.Cfg.URL, ErrNoCA)
		}
		var err error
		if roots, err = fetch.LoadCAs(s.Cfg.CAFile); err != nil {
			return err
		}
	}
	err := fetch.Fetch(ctx, fetch.Options{
		RootCAs: roots,
		URL:     s.Cfg.URL,
		Size:    s.Cfg.Size,
		SHA256:  s.Cfg.SHA256,
		Dest:    s.Cfg.ImageTarget(),
		GiveUp:  s.GiveUp,
		Backoff: Backoff,
		Log:     func(f string, a ...any) { s.logf(f, a...) },
	})
	if err != nil {
		return err
	}
	s.logf("%s: sha256 matches", s.Cfg.ImageTarget())
	return nil
}
