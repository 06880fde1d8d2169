//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package tty

import (
	"syscall"
	"unsafe"
)

// getTermios reads the terminal settings of fd.
func getTermios(fd uintptr) (*syscall.Termios, error) {
	var t syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlGet, uintptr(unsafe.Pointer(&t))); errno != 0 {
		return nil, errno
	}
	return &t, nil
}

// setTermios applies the terminal settings t to fd.
func setTermios(fd uintptr, t *syscall.Termios) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlSet, uintptr(unsafe.Pointer(t))); errno != 0 {
		return errno
	}
	return nil
}

// setNoEcho applies old without ECHO, keeping ICANON so that input is
// still read a line at a time, and ECHONL so that the Enter key still
// moves the cursor to the next line.
func setNoEcho(fd uintptr, old *syscall.Termios) error {
	t := *old
	t.Lflag &^= syscall.ECHO
	t.Lflag |= syscall.ICANON | syscall.ECHONL
	return setTermios(fd, &t)
}
