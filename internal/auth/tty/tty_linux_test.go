package tty

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair with the standard library only and
// returns its terminal (slave) side.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Skipf("ptsname: %v", e)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f.Fd()) {
		t.Error("IsTerminal(regular file) = true")
	}
	pts := openPTY(t)
	if !IsTerminal(pts.Fd()) {
		t.Error("IsTerminal(pty) = false")
	}
}

func TestDisableEchoAndRestore(t *testing.T) {
	pts := openPTY(t)
	before, err := getTermios(pts.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if before.Lflag&syscall.ECHO == 0 {
		t.Fatal("a fresh pty should echo")
	}
	restore, err := DisableEcho(pts.Fd())
	if err != nil {
		t.Fatal(err)
	}
	during, _ := getTermios(pts.Fd())
	if during.Lflag&syscall.ECHO != 0 || during.Lflag&syscall.ICANON == 0 {
		t.Errorf("after DisableEcho: lflag %#x, want ECHO off and ICANON on", during.Lflag)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatalf("second restore: %v", err)
	}
	after, _ := getTermios(pts.Fd())
	if after.Lflag != before.Lflag {
		t.Errorf("after restore: lflag %#x, want %#x", after.Lflag, before.Lflag)
	}
}

func TestDisableEchoOnFileFails(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := DisableEcho(f.Fd()); err == nil {
		t.Error("DisableEcho(regular file) succeeded")
	}
}
