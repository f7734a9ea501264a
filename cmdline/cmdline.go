// Package cmdline builds the kernel command line of a NixOS system, the one
// place where every boot artifact nbimg writes (netboot.ipxe, kexec-boot,
// pxelinux and iPXE menus, Raspberry Pi cmdline.txt, UKI .cmdline) gets it:
//
//	PRE... init=<toplevel>/init POST... <kernel-params> <extra...>
//
// PRE holds what a boot method needs before the system's own parameters
// (an NFS root's root=/dev/nfs ...), POST what it needs right after init=
// (iPXE's initrd=initrd), extra the options and parameters the user adds
// (console=, loglevel=, --cmdline), last so that they win.
//
// Words are separated by one space; runs of white space in kernel-params or
// the user's text are folded. A word may not hold a line break, a NUL or a
// double quote: the kernel's parser treats "..." as one word with blanks,
// which iPXE, pxelinux and cmdline.txt do not carry alike, so nbimg refuses
// rather than guesses.
// The init path must be absolute, without white space.
//
// Limits: the length is not checked against an architecture's maximum
// (2048 bytes on x86 boot protocols before 2.06, more since).
package cmdline

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
)

// ErrInvalid is returned for a command line that cannot be written safely.
var ErrInvalid = errors.New("cmdline: invalid kernel command line")

// Line is the kernel command line of one NixOS system.
type Line struct {
	Pre          []string // words before init=
	Init         string   // the stage-2 init, <toplevel>/init
	Post         []string // words right after init=
	KernelParams string   // the toplevel's kernel-params, as written there
	Extra        []string // more words, last (console=, loglevel=, the user's)
}

// badChars may not appear in any word.
const badChars = "\n\r\x00\""

// CheckText checks text a user gives as extra kernel parameters (a
// --cmdline flag): white-space separated words without line breaks, NULs
// or double quotes.
func CheckText(what, s string) error {
	if i := strings.IndexAny(s, badChars); i >= 0 {
		return fmt.Errorf("%w: %s %q has %q, which nbimg cannot pass through every boot loader: leave it out", ErrInvalid, what, s, s[i])
	}
	return nil
}

// Words returns the words of l, or an error naming the part at fault.
func (l Line) Words() ([]string, error) {
	if l.Init == "" {
		return nil, fmt.Errorf("%w: no init path", ErrInvalid)
	}
	if !path.IsAbs(l.Init) || strings.IndexFunc(l.Init, unicode.IsSpace) >= 0 {
		return nil, fmt.Errorf("%w: init path %q is not absolute or has white space", ErrInvalid, l.Init)
	}
	words := make([]string, 0, len(l.Pre)+len(l.Post)+len(l.Extra)+8)
	add := func(what string, ws ...string) error {
		for _, w := range ws {
			if err := CheckText(what, w); err != nil {
				return err
			}
			words = append(words, strings.Fields(w)...)
		}
		return nil
	}
	if err := add("parameter", l.Pre...); err != nil {
		return nil, err
	}
	if err := add("init path", "init="+l.Init); err != nil {
		return nil, err
	}
	if err := add("parameter", l.Post...); err != nil {
		return nil, err
	}
	if err := add("kernel-params", l.KernelParams); err != nil {
		return nil, err
	}
	if err := add("extra parameters", l.Extra...); err != nil {
		return nil, err
	}
	return words, nil
}

// String returns the command line as one string.
func (l Line) String() (string, error) {
	w, err := l.Words()
	if err != nil {
		return "", err
	}
	return strings.Join(w, " "), nil
}

// InitPath returns the init of a NixOS toplevel as the command line names
// it: the toplevel's own init link, not its target.
func InitPath(toplevel string) string {
	return strings.TrimRight(toplevel, "/") + "/init"
}
