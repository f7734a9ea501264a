package serve

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
)

// ovmfNoPXE are QEMU arguments that turn off the PXE boot options of
// Debian's OVMF (edk2 reads these fw_cfg files at start): its network boot
// options are then UEFI HTTP boot's, IPv4 first.
var ovmfNoPXE = []string{
	"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
	"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n",
}

// x86NetbootUKI writes the x86 fixture's netboot directory with its UKI
// (nbimg netboot --uki with the host's systemd stub), the store image
// being the fixture's reference image.
func x86NetbootUKI(t *testing.T, f *testutil.Fixture, dir string) {
	t.Helper()
	ctx := context.Background()
	systems, err := builder.LoadSystems(ctx, []string{f.Toplevel}, []string{f.ClosureDir}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = builder.Netboot(ctx, systems[0], dir, builder.BootOptions{
		InitrdOptions: builder.InitrdOptions{ImageFile: f.RefSquashfs},
		UKI:           &builder.UKIOptions{},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBootUEFIHTTP: a UEFI HTTP boot client (Debian's OVMF, whose HTTP
// boot is on, with its PXE options turned off) on the test LAN sends
// client architecture 16 and vendor class HTTPClient; dnsmasq gives it an
// address, nbimg serve's proxy answer gives it the URL of the x86 netboot
// directory's nixos.efi (vendor class HTTPClient), the firmware fetches
// the UKI from serve's HTTP server and it boots the fixture to its full
// content check.
func TestBootUEFIHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot: not in -short")
	}
	bin := qemu.Require(t)
	code := testutil.File(t, "/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf")
	vars := testutil.File(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf")
	testutil.File(t, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd-boot-efi")
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	dir := filepath.Join(t.TempDir(), "netboot")
	x86NetbootUKI(t, f, dir)
	lan := qemu.NewLAN(t)
	const mac = "52:54:00:4e:42:05"
	_, logs := serveLAN(t, lan, Options{Dirs: []string{dir}})
	varsCopy := filepath.Join(t.TempDir(), "vars.fd")
	copyFile(t, vars, varsCopy)
	args := append([]string{"-machine", "q35",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + varsCopy}, ovmfNoPXE...)
	nic := lan.Tap(t, "virtio-net-pci", mac)
	nic[len(nic)-1] += ",romfile=" // the firmware's own network stack
	res := qemu.BootT(t, qemu.Config{
		Binary:      lan.Binary(t, bin),
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     10 * time.Minute,
		Memory:      1536,
		ExtraArgs:   append(args, nic...),
	})
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
	if !strings.Contains(string(res.Console), "Start HTTP Boot over IPv4") {
		t.Errorf("the console does not show the firmware's HTTP boot")
	}
	st, err := os.Stat(filepath.Join(dir, netboot.UKIName))
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + lan.ServerIP.String() + ":80/nixos.efi"
	log := logs.String()
	for _, want := range []string{"class=http-x86 ipxe=false", "boot=" + url,
		fmt.Sprintf(`method=GET path=/nixos.efi range="" status=200 bytes=%d `, st.Size())} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
	if strings.Contains(log, "proto=tftp") {
		t.Errorf("the HTTP boot client used TFTP:\n%s", log)
	}
}

// TestHTTPEFIType: EFI programs are served as application/efi (what UEFI
// HTTP boot clients take first), other files by Go's rules.
func TestHTTPEFIType(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a", "nixos.efi"), fakePE(peMachineAMD64))
	writeFile(t, filepath.Join(root, "BOOTX64.EFI"), fakePE(peMachineAMD64))
	writeFile(t, filepath.Join(root, "netboot.ipxe"), []byte("#!ipxe\n"))
	s, _ := running(t, Options{Dirs: []string{root}})
	base := "http://" + s.Addr("http").String()
	for name, want := range map[string]string{"a/nixos.efi": "application/efi", "BOOTX64.EFI": "application/efi", "netboot.ipxe": "text/plain; charset=utf-8"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, err := http.NewRequest(method, base+"/"+name, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want {
				t.Errorf("%s %s: %s, Content-Type %q; want 200 and %q", method, name, resp.Status, resp.Header.Get("Content-Type"), want)
			}
		}
	}
}
