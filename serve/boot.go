package serve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nbimg/nbimg/serve/dhcp"
)

// Boot file names looked up in the roots (the machine's directory first,
// then the roots themselves), in order of preference. nixos.efi and
// uki.efi (UKINames) are nbimg's UKIs of any architecture: a client gets
// one only when its directory's manifest.json (or its PE header) says it
// is for the client's architecture; the names with an architecture in
// them are taken as they say.
var (
	// BIOSFiles: iPXE's PXE chain loader, else pxelinux (nbimg pxe).
	BIOSFiles = []string{"undionly.kpxe", "pxelinux.0"}
	// EFIx86Files: iPXE for x86-64 UEFI, else an x86-64 UKI.
	EFIx86Files = []string{"ipxe.efi", "snponly.efi", "nixos.efi", "uki.efi", "BOOTX64.EFI"}
	// EFIArm64Files: iPXE for arm64 UEFI, else an arm64 UKI.
	EFIArm64Files = []string{"ipxe-arm64.efi", "snponly-arm64.efi", "nixos.efi", "uki.efi", "nixos-aa64.efi", "uki-aa64.efi", "BOOTAA64.EFI"}
	// HTTPx86Files and HTTPArm64Files: UEFI HTTP boot prefers the UKI
	// (no second loader), else iPXE.
	HTTPx86Files   = []string{"nixos.efi", "uki.efi", "BOOTX64.EFI", "ipxe.efi", "snponly.efi"}
	HTTPArm64Files = []string{"nixos.efi", "uki.efi", "nixos-aa64.efi", "uki-aa64.efi", "BOOTAA64.EFI", "ipxe-arm64.efi", "snponly-arm64.efi"}
	// ScriptFiles: the iPXE script of an artifact directory (nbimg
	// netboot writes netboot.ipxe, nbimg pxe boot.ipxe).
	ScriptFiles = []string{"netboot.ipxe", "boot.ipxe"}
	// PiFiles: a Raspberry Pi boot/ directory has one of these.
	PiFiles = []string{"start4.elf", "start.elf", "bootcode.bin"}
)

// Machine is one entry of the machine map.
type Machine struct {
	// Dir is an artifact directory relative to the served roots.
	Dir string `json:"dir"`
	// Cmdline is added to the kernel command line (through netboot.ipxe's
	// ${cmdline}).
	Cmdline string `json:"cmdline"`
}

// LoadMachines reads a machine map: a JSON object from MAC address to
// Machine, e.g. {"52:54:00:12:34:56": {"dir": "web", "cmdline": "console=ttyS0"}}.
func LoadMachines(file string) (map[string]Machine, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("serve: machine map: %w", err)
	}
	var raw map[string]Machine
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("serve: machine map %s: %w", file, err)
	}
	out := make(map[string]Machine, len(raw))
	for k, m := range raw {
		mac, err := net.ParseMAC(k)
		if err != nil {
			return nil, fmt.Errorf("serve: machine map %s: %q: %w", file, k, err)
		}
		if m.Dir != "" {
			d, err := CleanName(m.Dir)
			if err != nil {
				return nil, fmt.Errorf("serve: machine map %s: %s: %w", file, k, err)
			}
			m.Dir = d
		}
		if strings.ContainsAny(m.Cmdline, "\n\r\x00") {
			return nil, fmt.Errorf("serve: machine map %s: %s: the command line must be one line", file, k)
		}
		out[mac.String()] = m
	}
	return out, nil
}

// Decide chooses the boot file for a DHCP client (it implements
// dhcp.Decider).
func (s *Server) Decide(ctx context.Context, c dhcp.Client) (dhcp.Boot, bool, error) {
	st := s.state()
	mac := c.MAC.String()
	m := st.machines[mac]
	if s.opts.API != "" {
		if _, err := s.apiBoot(ctx, mac); err != nil {
			if errors.Is(err, errNoMachine) {
				return dhcp.Boot{}, false, nil
			}
			return dhcp.Boot{}, false, err
		}
	}
	if c.Class == dhcp.ClassPi {
		if _, ok := st.roots.first("", PiFiles...); ok {
			return dhcp.Boot{Message: "raspberry pi boot/"}, true, nil
		}
		return dhcp.Boot{}, false, nil
	}
	if c.IPXE {
		if s.httpBase == "" {
			p, ok := st.roots.first(m.Dir, ScriptFiles...)
			return dhcp.Boot{File: p, Message: "ipxe script over tftp"}, ok, nil
		}
		return dhcp.Boot{File: s.httpBase + "/_/ipxe/" + mac, Message: "ipxe script"}, true, nil
	}
	var names []string
	arch := ""
	switch c.Class {
	case dhcp.ClassBIOS:
		names = BIOSFiles
	case dhcp.ClassEFIx86:
		names, arch = EFIx86Files, ArchX86
	case dhcp.ClassEFIArm64:
		names, arch = EFIArm64Files, ArchArm64
	case dhcp.ClassHTTPx86:
		names, arch = HTTPx86Files, ArchX86
	case dhcp.ClassHTTPArm64:
		names, arch = HTTPArm64Files, ArchArm64
	}
	if s.opts.API != "" {
		// The API names a kernel and initrds: only iPXE can boot them.
		names = keep(names, func(n string) bool {
			return n != "pxelinux.0" && (strings.Contains(n, "pxe") || strings.Contains(n, "snponly"))
		})
	}
	p, ok := st.roots.firstFor(arch, m.Dir, names...)
	if !ok && m.Dir != "" {
		p, ok = st.roots.firstFor(arch, "", names...)
	}
	if !ok && arch != "" && m.Dir == "" && s.opts.API == "" {
		// A client the machine map does not place gets a UKI of its
		// architecture from an artifact directory under the roots (e.g.
		// out/x86/nixos.efi and out/arm/nixos.efi served as out/).
		p, ok = st.roots.findFor(arch, ukiSearchDepth)
	}
	if !ok {
		return dhcp.Boot{}, false, nil
	}
	if c.Class == dhcp.ClassHTTPx86 || c.Class == dhcp.ClassHTTPArm64 {
		if s.httpBase == "" {
			return dhcp.Boot{}, false, nil
		}
		return dhcp.Boot{File: s.httpBase + "/" + escapePath(p), Message: "uefi http boot"}, true, nil
	}
	return dhcp.Boot{File: p, Message: "tftp"}, true, nil
}

// ukiSearchDepth: how deep Decide looks for a UKI of a client's
// architecture when neither the machine's directory nor the roots have
// one (pxe trees keep theirs in tftp/<toplevel>/).
const ukiSearchDepth = 3

func keep(names []string, f func(string) bool) []string {
	var out []string
	for _, n := range names {
		if f(n) {
			out = append(out, n)
		}
	}
	return out
}

func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}

// ipxeScript writes the iPXE script for a MAC address: the machine's
// artifact script, chained with its extra command line, or, with an API,
// the kernel and initrds it names (fetched through this server).
func (s *Server) ipxeScript(ctx context.Context, base, mac string) (string, error) {
	if s.opts.API != "" {
		spec, err := s.apiBoot(ctx, mac)
		if err != nil {
			return "", err
		}
		return s.apiScript(base, spec), nil
	}
	st := s.state()
	m := st.machines[mac]
	dir := m.Dir
	if dir == "" && len(s.opts.Systems) > 0 {
		if _, ok := st.roots.first("", ScriptFiles...); !ok {
			dir = s.opts.Systems[0].Name // no static script: boot the first system
		}
	}
	if s.dyn[dir] != nil {
		if err := s.ensure(dir); err != nil {
			return waitScript(dir, err, base+"/_/ipxe/"+mac), nil
		}
	}
	p, ok := st.roots.first(dir, ScriptFiles...)
	if !ok && dir != "" {
		p, ok = st.roots.first("", ScriptFiles...)
	}
	if !ok {
		return "", errNoMachine
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	if m.Cmdline != "" {
		fmt.Fprintf(&b, "set cmdline %s\n", m.Cmdline)
	}
	fmt.Fprintf(&b, "chain %s/%s\n", base, escapePath(p))
	return b.String(), nil
}

// errNoMachine: nothing to boot for this client.
var errNoMachine = errors.New("serve: nothing to boot for this machine")

// apiSpec is pixiecore's API answer.
type apiSpec struct {
	Kernel  string          `json:"kernel"`
	Initrd  []string        `json:"initrd"`
	Cmdline json.RawMessage `json:"cmdline"`
	Message string          `json:"message"`
}

const maxAPIBody = 1 << 20

// apiBoot asks the API server what mac boots (GET API/v1/boot/<mac>).
// A 404 is errNoMachine.
func (s *Server) apiBoot(ctx context.Context, mac string) (*apiSpec, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := strings.TrimRight(s.opts.API, "/") + "/v1/boot/" + url.PathEscape(mac)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("serve: api: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("serve: api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNoMachine
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("serve: api %s: %s", u, resp.Status)
	}
	var spec apiSpec
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAPIBody)).Decode(&spec); err != nil {
		return nil, fmt.Errorf("serve: api %s: %w", u, err)
	}
	if spec.Kernel == "" {
		return nil, fmt.Errorf("serve: api %s: no kernel", u)
	}
	return &spec, nil
}

var idTemplate = regexp.MustCompile(`\{\{\s*ID\s+"([^"]*)"\s*\}\}`)

// apiScript writes the iPXE script for an API answer. Every URL goes
// through this server's /_/file/ID, as pixiecore does, so clients need to
// reach only this server.
func (s *Server) apiScript(base string, spec *apiSpec) string {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	if spec.Message != "" {
		fmt.Fprintf(&b, "echo %s\n", oneLine(spec.Message))
	}
	cmdline := s.apiCmdline(base, spec.Cmdline)
	for i := range spec.Initrd {
		cmdline += fmt.Sprintf(" initrd=initrd%d", i)
	}
	fmt.Fprintf(&b, "kernel --name kernel %s/_/file/%s %s\n", base, s.fileID(spec.Kernel), strings.TrimSpace(cmdline))
	for i, f := range spec.Initrd {
		fmt.Fprintf(&b, "initrd --name initrd%d %s/_/file/%s\n", i, base, s.fileID(f))
	}
	b.WriteString("boot\n")
	return b.String()
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

func (s *Server) apiCmdline(base string, raw json.RawMessage) string {
	var line string
	var str string
	var obj map[string]any
	switch {
	case len(raw) == 0:
	case json.Unmarshal(raw, &str) == nil:
		line = str
	case json.Unmarshal(raw, &obj) == nil:
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			switch v := obj[k].(type) {
			case bool:
				if v {
					parts = append(parts, k)
				}
			case string:
				parts = append(parts, k+"="+v)
			default:
				parts = append(parts, fmt.Sprintf("%s=%v", k, v))
			}
		}
		line = strings.Join(parts, " ")
	}
	line = idTemplate.ReplaceAllStringFunc(line, func(m string) string {
		return base + "/_/file/" + s.fileID(idTemplate.FindStringSubmatch(m)[1])
	})
	return oneLine(line)
}

// maxFileIDs bounds the table of URLs handed out by API scripts.
const maxFileIDs = 4096

// fileID records an API file reference (resolved against the API URL)
// and returns its ID.
func (s *Server) fileID(ref string) string {
	u := ref
	if base, err := url.Parse(strings.TrimRight(s.opts.API, "/") + "/"); err == nil {
		if r, err := base.Parse(ref); err == nil {
			u = r.String()
		}
	}
	sum := sha256.Sum256([]byte(u))
	id := hex.EncodeToString(sum[:12])
	s.filesMu.Lock()
	if len(s.files) >= maxFileIDs {
		s.files = map[string]string{}
	}
	s.files[id] = u
	s.filesMu.Unlock()
	return id
}

func (s *Server) fileURL(id string) (string, bool) {
	s.filesMu.Lock()
	defer s.filesMu.Unlock()
	u, ok := s.files[id]
	return u, ok
}
