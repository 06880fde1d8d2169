// Package tty turns terminal echo off while a password is typed, with the
// standard library only (no golang.org/x/term): an ioctl on Linux and the
// BSDs, and nothing elsewhere, where IsTerminal reports false so that
// callers ask for the password on standard input instead.
package tty

// IsTerminal reports whether fd is a terminal whose echo DisableEcho can
// turn off.
func IsTerminal(fd uintptr) bool {
	_, err := getTermios(fd)
	return err == nil
}

// DisableEcho turns off the echo of typed characters on the terminal fd
// (keeping canonical, line-by-line input) and returns a function that
// restores the previous settings. The restore function is safe to call
// more than once and from another goroutine (a signal handler).
func DisableEcho(fd uintptr) (restore func() error, err error) {
	old, err := getTermios(fd)
	if err != nil {
		return nil, err
	}
	if err := setNoEcho(fd, old); err != nil {
		return nil, err
	}
	return func() error { return setTermios(fd, old) }, nil
}
