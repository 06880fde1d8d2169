package maildir

import (
	"os"
	"syscall"
	"unsafe"
)

// ext4 (and ext2/ext3) inode attribute ioctls, as chattr(1) uses them. The
// request numbers encode sizeof(long); the kernel transfers an int.
const (
	fsIocGetFlags = 2<<30 | uintptr(unsafe.Sizeof(uintptr(0)))<<16 | 'f'<<8 | 1 // _IOR('f', 1, long)
	fsIocSetFlags = 1<<30 | uintptr(unsafe.Sizeof(uintptr(0)))<<16 | 'f'<<8 | 2 // _IOW('f', 2, long)
	fsTopDirFl    = 0x00020000                                                  // FS_TOPDIR_FL, chattr +T
)

// markTopDir sets the "top of directory hierarchy" attribute (chattr +T) on
// dir, so that ext4 places each directory created in it with its Orlov
// allocator, in a block group it picks (seeded by the new directory's name)
// among those with few directories and many free inodes, instead of next to
// dir. Files get their inodes in their directory's block group, so a new
// directory in dir is a way to leave a block group (see stage.go). Best
// effort: filesystems without the attribute (tmpfs, xfs, btrfs) refuse or
// ignore the ioctl, and dir stays as it is.
func markTopDir(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		var flags int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, fsIocGetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 || flags&fsTopDirFl != 0 {
			return
		}
		flags |= fsTopDirFl
		syscall.Syscall(syscall.SYS_IOCTL, fd, fsIocSetFlags, uintptr(unsafe.Pointer(&flags)))
	})
}
