package auth

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// WatchInterval is how often [UsersFile.Watch] looks at the users file.
const WatchInterval = time.Second

// UsersFile is a live view of a users file: [UsersFile.Current] returns the
// latest valid snapshot, [UsersFile.Reload] re-reads the file, and
// [UsersFile.Watch] reloads it when it changes. A reload that fails (file
// missing, malformed line) keeps the previous snapshot in service, so a
// broken edit never locks every user out. It is safe for concurrent use.
type UsersFile struct {
	path   string
	logger *slog.Logger
	cur    atomic.Pointer[Users]

	mu      sync.Mutex            // serializes Reload; guards seen
	seen    fileStamp             // the file as of the last reload attempt
	lastErr atomic.Pointer[error] // the failure of the last reload; nil after a success
}

// fileStamp identifies a version of a file by what stat reports.
type fileStamp struct {
	size     int64
	mtime    time.Time
	dev, ino uint64
	mode     fs.FileMode
}

func stampOf(fi fs.FileInfo) fileStamp {
	dev, ino := fileIdentity(fi)
	return fileStamp{size: fi.Size(), mtime: fi.ModTime(), dev: dev, ino: ino, mode: fi.Mode()}
}

// OpenUsersFile loads the users file at path. Unlike later reloads, a
// failure here is returned: the server should not start with a broken
// users file. A nil logger discards log output.
func OpenUsersFile(path string, logger *slog.Logger) (*UsersFile, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	uf := &UsersFile{path: path, logger: logger}
	uf.mu.Lock()
	defer uf.mu.Unlock()
	if err := uf.reloadLocked(); err != nil {
		return nil, err
	}
	// Compute the dummy hash now rather than during the first login of an
	// unknown user, which would otherwise take twice as long as others.
	go dummyHash(uf.Current().dummyCost())
	return uf, nil
}

// Path returns the file name given to OpenUsersFile.
func (uf *UsersFile) Path() string { return uf.path }

// Current returns the latest successfully loaded snapshot.
func (uf *UsersFile) Current() *Users { return uf.cur.Load() }

// Reload re-reads the users file now (the server calls it on SIGHUP). On
// error the previous snapshot stays current, the error is logged, and it
// is returned.
func (uf *UsersFile) Reload() error {
	uf.mu.Lock()
	defer uf.mu.Unlock()
	if err := uf.reloadLocked(); err != nil {
		uf.lastErr.Store(&err)
		uf.logger.Error("users file reload failed; keeping the previous users", "path", uf.path, "err", err)
		return err
	}
	uf.lastErr.Store(nil)
	uf.logger.Info("users file loaded", "path", uf.path, "users", uf.cur.Load().Len())
	return nil
}

// Err returns the error of the last reload, by [UsersFile.Reload] or the
// watcher, while the previous snapshot is in service because of it; nil
// once a reload has succeeded again (or none has failed).
func (uf *UsersFile) Err() error {
	if p := uf.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (uf *UsersFile) reloadLocked() error {
	f, err := os.Open(uf.path)
	if err != nil {
		uf.seen = fileStamp{}
		return fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	// Record the stamp of what we read before parsing, so that a broken
	// file is not re-parsed (and re-logged) every second until it changes.
	uf.seen = stampOf(fi)
	u, err := ParseUsers(f, uf.path)
	if err != nil {
		return err
	}
	uf.cur.Store(u)
	return nil
}

// changed reports whether the file differs from the last reload attempt.
// changed reports whether the users file changed since it was loaded, and
// what a stat says of it now (the zero stamp when it is missing).
func (uf *UsersFile) changed() (bool, fileStamp) {
	fi, err := os.Stat(uf.path)
	uf.mu.Lock()
	defer uf.mu.Unlock()
	if err != nil {
		// Missing now: report it once, when it disappears.
		return uf.seen != fileStamp{}, fileStamp{}
	}
	st := stampOf(fi)
	return st != uf.seen, st
}

// Watch polls the users file every [WatchInterval] and reloads it when its
// size, modification time, inode or mode changes, until ctx is done. A
// change is loaded once the file has stayed the same for one interval,
// so that a file being written in place is not read half-written (whose
// first lines alone may parse, and drop users until the next change). It
// uses only stat, so it works on every file system (including the
// symlink swaps of Kubernetes secrets). Run it in its own goroutine.
func (uf *UsersFile) Watch(ctx context.Context) {
	uf.watch(ctx, WatchInterval)
}

func (uf *UsersFile) watch(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var pending *fileStamp // a change seen at the last poll
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			changed, st := uf.changed()
			if !changed {
				pending = nil
				continue
			}
			if pending == nil || *pending != st {
				pending = &st // settling: look again at the next poll
				continue
			}
			pending = nil
			_ = uf.Reload() // logged by Reload
		}
	}
}
