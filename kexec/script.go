package kexec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nbimg/nbimg/cmdline"
)

// File names in a kexec tree, and the tarball's.
const (
	KernelName  = "bzImage"
	InitrdName  = "initrd.gz"
	ScriptName  = "kexec-boot"
	TarballName = "kexec.tar.gz"
	// TarballDir is the directory the tarball's files are in.
	TarballDir = "kexec"
)

// ErrBadScript is returned for fields that cannot go in kexec-boot.
var ErrBadScript = errors.New("kexec: invalid kexec-boot field")

// Script holds what kexec-boot says.
type Script struct {
	// Init is the stage 2 init, <toplevel>/init.
	Init string
	// KernelParams is the toplevel's kernel-params, one line.
	KernelParams string
	// Cmdline is extra kernel parameters, added after KernelParams.
	Cmdline string
	// Label names the system in the script's comment and messages, e.g.
	// nixos-system-NAME-VERSION; optional.
	Label string
}

// CommandLine returns the kernel command line kexec-boot passes when it is
// given no arguments.
func (s Script) CommandLine() (string, error) {
	if strings.ContainsAny(s.Label, "\n\r\x00") {
		return "", fmt.Errorf("%w: label %q has a line break or NUL", ErrBadScript, s.Label)
	}
	line, err := cmdline.Line{Init: s.Init, KernelParams: s.KernelParams, Extra: []string{s.Cmdline}}.String()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadScript, err)
	}
	return line, nil
}

// shellQuote quotes s for a POSIX shell: inside single quotes, each single
// quote in s ending the quoted part, escaped with a backslash, and reopening it.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Text returns the text of kexec-boot.
func (s Script) Text() ([]byte, error) {
	cmdline, err := s.CommandLine()
	if err != nil {
		return nil, err
	}
	what := "the NixOS system"
	if s.Label != "" {
		what = s.Label
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# Boots %s with kexec, replacing the running kernel.\n", what)
	b.WriteString("# Usage: kexec-boot [KERNEL-PARAMETER...]  (needs root and kexec-tools)\n")
	fmt.Fprintf(&b, "# %s and %s are read from this script's directory; arguments are added\n", KernelName, InitrdName)
	b.WriteString("# to the kernel command line. Written by nbimg kexec-tree.\n")
	b.WriteString("set -eu\n\n")
	if strings.ContainsAny(cmdline, "$`") {
		b.WriteString("# shellcheck disable=SC2016 # kernel parameters, not shell expressions\n")
	}
	fmt.Fprintf(&b, "cmdline=%s\n\n", shellQuote(cmdline))
	b.WriteString(`if ! command -v kexec >/dev/null 2>&1; then
	echo "kexec-boot: kexec not found: install kexec-tools" >&2
	exit 1
fi

case $0 in
*/*) dir=${0%/*}/ ;;
*) dir=./ ;;
esac
case $dir in
/*) ;;
*) dir=./$dir ;;
esac
dir=$(cd "$dir" && pwd)
for f in `)
	fmt.Fprintf(&b, "%s %s; do\n", KernelName, InitrdName)
	b.WriteString(`	if [ ! -f "$dir/$f" ]; then
		echo "kexec-boot: $dir/$f not found: keep it next to kexec-boot" >&2
		exit 1
	fi
done

if [ "$#" -gt 0 ]; then
	cmdline="$cmdline $*"
fi
`)
	fmt.Fprintf(&b, "set -- --load \"$dir/%s\" --initrd=\"$dir/%s\" --command-line=\"$cmdline\"\n", KernelName, InitrdName)
	b.WriteString(`case $(kexec --help 2>&1) in
*--kexec-syscall-auto*) set -- "$@" --kexec-syscall-auto ;;
esac

echo "kexec-boot: loading $dir/` + KernelName + ` with: $cmdline" >&2
kexec "$@"
kexec -e
echo "kexec-boot: kexec -e returned: the kernel did not start" >&2
exit 1
`)
	return []byte(b.String()), nil
}
