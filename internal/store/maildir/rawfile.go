package maildir

import (
	"io"
	"io/fs"
	"os"
	"syscall"
)

// rawFile is a message file read with plain read(2) calls. os.Open offers
// every file to Go's netpoller (a failed epoll_ctl) and sets and reads its
// flags (fcntl): about ten system calls a message more than open, read and
// close, which IMAP FETCH and POP3 RETR of many small messages paid for
// each.
type rawFile struct {
	fd   int
	path string
}

// openRaw opens path for reading.
func openRaw(path string) (*rawFile, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return &rawFile{fd: fd, path: path}, nil
	}
}

// Read implements io.Reader.
func (f *rawFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := syscall.Read(f.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: f.path, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// Close implements io.Closer.
func (f *rawFile) Close() error {
	if f.fd < 0 {
		return os.ErrClosed
	}
	err := syscall.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}
