package maildir

import (
	"os"
	"sync"
	"syscall"
)

// Group commit of directory fsyncs.
//
// Making a new directory entry durable needs an fsync of the directory. When
// many deliveries link files into the same new/ directory at once, one fsync
// covers every entry made before it started, so a delivery need not run its
// own: it waits for the first fsync that starts after its link was made
// (an fsync already running when the delivery arrives may have started
// before the link and does not count). Deliveries arriving while an fsync
// runs are all satisfied by the next one, so under load the number of
// directory fsyncs grows with the number of rounds, not of deliveries.

// dirSyncer serializes and batches the fsyncs of one directory.
type dirSyncer struct {
	dir   string
	fsync func(dir string) error

	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // generation of the last fsync started
	done    uint64 // generation of the last fsync finished
	running bool   // an fsync is in progress
	failed  uint64 // generation of the last failed fsync (0: none)
	lastErr error  // error of generation failed
	waiting int    // goroutines blocked in cond.Wait (observed by tests)
}

// newDirSyncer returns a syncer for dir that runs fsync to sync it.
func newDirSyncer(dir string, fsync func(string) error) *dirSyncer {
	s := &dirSyncer{dir: dir, fsync: fsync}
	s.cond.L = &s.mu
	return s
}

// Sync returns once an fsync of the directory that started after Sync was
// called has completed. It returns an error if that fsync, or any fsync
// finished after it by the time this caller looks, failed: a conservative
// answer, since after a failed fsync the kernel may have dropped the dirty
// state and a later success proves nothing.
func (s *dirSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The fsync that will count for us is the next one to start.
	target := s.started + 1
	for s.done < target {
		if s.running {
			s.waiting++
			s.cond.Wait()
			s.waiting--
			continue
		}
		s.running = true
		s.started++
		gen := s.started
		s.mu.Unlock()
		err := s.fsync(s.dir)
		s.mu.Lock()
		s.running = false
		s.done = gen
		if err != nil {
			s.failed, s.lastErr = gen, err
		}
		s.cond.Broadcast()
	}
	if s.failed >= target {
		return s.lastErr
	}
	return nil
}

// waiters returns the number of goroutines waiting for an fsync (tests).
func (s *dirSyncer) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// syncerSet hands out one dirSyncer per directory path. Entries are never
// removed: there are at most three per mailbox.
type syncerSet struct {
	fsync func(dir string) error
	m     sync.Map // string -> *dirSyncer
}

// get returns the syncer of dir.
func (ss *syncerSet) get(dir string) *dirSyncer {
	if s, ok := ss.m.Load(dir); ok {
		return s.(*dirSyncer)
	}
	s, _ := ss.m.LoadOrStore(dir, newDirSyncer(dir, ss.fsync))
	return s.(*dirSyncer)
}

// syncDir opens dir and fsyncs it, making its entries (names created or
// removed) durable. It uses the system calls directly: os.Open would also
// try to register the descriptor with the network poller (four fcntl calls
// and a failing epoll_ctl), on the path of every delivery.
func syncDir(dir string) error {
	fd, err := openDir(dir)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	err = retryEINTR(func() error { return syscall.Fsync(fd) })
	if cerr := syscall.Close(fd); err == nil && cerr != nil {
		return &os.PathError{Op: "close", Path: dir, Err: cerr}
	}
	if err != nil {
		return &os.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}

// openDir opens dir read-only as a directory (close-on-exec).
func openDir(dir string) (fd int, err error) {
	err = retryEINTR(func() error {
		fd, err = syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// retryEINTR calls f until it returns something other than EINTR.
func retryEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}
