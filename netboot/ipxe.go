// Package netboot writes the boot glue that sits next to a kernel and an
// initrd on a network-boot server: netboot.ipxe (IPXE), the boot menus of a
// PXE tree for pxelinux and iPXE (Menu, FindSyslinux) and the dnsmasq
// configuration that serves it (Dnsmasq).
//
// netboot.ipxe is the iPXE script NixOS's netboot module writes, with fixed
// image names so the directory can be served as is over TFTP or HTTP:
//
//	#!ipxe
//	kernel --name bzImage bzImage init=<toplevel>/init initrd=initrd <kernel-params> ${cmdline}
//	initrd --name initrd initrd
//	boot
//
// ${cmdline} is an iPXE setting, empty unless a chain-loading menu (such as
// netboot.xyz) sets it, so a menu can add kernel parameters.
//
// UEFI clients: the dnsmasq configuration selects the boot file by the
// client's architecture (DHCP option 93): x86-64 UEFI gets iPXE's EFI
// build (FindIPXEEFI), which chains the iPXE menu, or a Unified Kernel
// Image (UKIName, see package uki); arm64 UEFI gets its own file; UEFI
// HTTP boot gets a URL.
//
// Limits: every field must fit on one line, and kernel parameters are
// passed to iPXE as written; iPXE expands "${...}" inside them. The
// pxelinux menu is for BIOS clients (pxelinux.0 and its BIOS modules);
// proxy DHCP is IPv4 only and answers PXE clients, not UEFI HTTP boot.
package netboot

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nbimg/nbimg/cmdline"
)

// File names in a netboot directory.
const (
	KernelName = "bzImage"
	InitrdName = "initrd"
	ScriptName = "netboot.ipxe"
)

// ErrBadScript is returned for fields that cannot go in the script.
var ErrBadScript = errors.New("netboot: invalid iPXE script field")

// IPXE holds what netboot.ipxe says.
type IPXE struct {
	// Kernel is the kernel's file name; "" is KernelName (bzImage). An
	// aarch64 system's is Image, as nixpkgs names it there.
	Kernel string
	// Init is the stage 2 init, InitPath(toplevel).
	Init string
	// KernelParams is the toplevel's kernel-params file, one line.
	KernelParams string
	// Cmdline is extra kernel parameters, added after KernelParams.
	Cmdline string
}

// InitPath returns the init of a NixOS toplevel.
func InitPath(toplevel string) string { return cmdline.InitPath(toplevel) }

// KernelCmdline returns the kernel command line the script passes with
// ${cmdline} empty: what to give a kernel booted directly (QEMU -append,
// pixiecore --cmdline) from the same directory.
func (s IPXE) KernelCmdline() (string, error) {
	args, err := s.args()
	if err != nil {
		return "", err
	}
	return strings.Join(args, " "), nil
}

func (s IPXE) args() ([]string, error) {
	w, err := cmdline.Line{Init: s.Init, Post: []string{"initrd=" + InitrdName}, KernelParams: s.KernelParams, Extra: []string{s.Cmdline}}.Words()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadScript, err)
	}
	return w, nil
}

// Script returns the text of netboot.ipxe.
func (s IPXE) Script() ([]byte, error) {
	args, err := s.args()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	kernel := s.Kernel
	if kernel == "" {
		kernel = KernelName
	}
	if strings.ContainsAny(kernel, " \t\n\r/$") {
		return nil, fmt.Errorf("%w: kernel file name %q", ErrBadScript, kernel)
	}
	fmt.Fprintf(&b, "kernel --name %s %s %s ${cmdline}\n", kernel, kernel, strings.Join(args, " "))
	fmt.Fprintf(&b, "initrd --name %s %s\n", InitrdName, InitrdName)
	b.WriteString("boot\n")
	return []byte(b.String()), nil
}

// WriteTo writes the script to w.
func (s IPXE) WriteTo(w io.Writer) (int64, error) {
	b, err := s.Script()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}
