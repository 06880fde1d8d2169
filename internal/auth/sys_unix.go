//go:build unix

package auth

import (
	"io/fs"
	"os"
	"syscall"
)

// fileIdentity returns the device and inode of a file, so that a rename
// over the users file is noticed even when size and mtime happen to match.
func fileIdentity(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}

// copyOwner gives the file f the owner and group of fi, best effort: when
// root edits a users file owned by the service account, the replacement
// must stay readable by the server. Errors are ignored because an
// unprivileged user cannot chown and then owns the original file anyway.
func copyOwner(f *os.File, fi fs.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
			_ = f.Chown(int(st.Uid), int(st.Gid))
		}
	}
}

// lockDir takes an exclusive advisory lock on the directory d, so that two
// concurrent `postoffice user` commands do not lose each other's edits.
// The lock is released when d is closed.
func lockDir(d *os.File) error {
	for {
		err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}
