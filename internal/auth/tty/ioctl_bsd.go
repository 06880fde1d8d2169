//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package tty

import "syscall"

const (
	ioctlGet = syscall.TIOCGETA
	ioctlSet = syscall.TIOCSETA
)
