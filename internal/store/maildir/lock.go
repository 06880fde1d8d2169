package maildir

import (
	"errors"
	"fmt"
	"os"
	"postoffice/internal/store"
	"syscall"
)

// flock applies flock(2) operation how (syscall.LOCK_EX, optionally
// |syscall.LOCK_NB, or syscall.LOCK_UN) to f. Locks taken with flock belong to
// the open file description, so two opens of one file conflict even inside one
// process, and the lock is released when the last descriptor of that open is
// closed (also when the process dies).
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	cerr := rc.Control(func(fd uintptr) {
		ferr = retryEINTR(func() error { return syscall.Flock(int(fd), how) })
	})
	if cerr != nil {
		return cerr
	}
	if ferr != nil {
		return &os.PathError{Op: "flock", Path: f.Name(), Err: ferr}
	}
	return nil
}

// tryLock takes an exclusive flock on f without waiting. It returns store.ErrLocked
// (wrapping the system error) when another open file description holds a
// conflicting lock.
func tryLock(f *os.File) error {
	err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("%w: %w", store.ErrLocked, err)
	}
	return err
}

// sameFile reports whether path still names the file open as f (same device
// and inode). It is false when path was removed or replaced.
func sameFile(f *os.File, path string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}
