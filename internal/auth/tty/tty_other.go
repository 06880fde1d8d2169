//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package tty

import "errors"

var errUnsupported = errors.New("tty: terminal control is not supported on this system")

type termios struct{}

func getTermios(uintptr) (*termios, error) { return nil, errUnsupported }
func setTermios(uintptr, *termios) error   { return errUnsupported }
func setNoEcho(uintptr, *termios) error    { return errUnsupported }
