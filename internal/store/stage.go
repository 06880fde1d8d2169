package store

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Staging of message data.
//
// A delivery writes the message into a tmp file, makes it durable and then
// gives it its names in new/. Creating and removing that tmp file costs more
// than writing 2 KB into it: inode allocation (which on ext4 without a
// journal scans past recently freed inodes), the tmp directory's lock, and,
// at fdatasync, writing the tmp directory's block again (ext4 writes the
// parent of a newly created file with it). None of that has to happen while
// a client waits for its 250.
//
// So the Maildir keeps a small pool of empty tmp files, created ahead of
// need by one background goroutine in one staging directory, root/.tmp
// (a name no mailbox can have), each held open under an exclusive flock so
// that no tmp cleaner (of this or another process) removes it. A delivery
// takes one, writes and fdatasyncs it, links it into new/ of its mailboxes,
// syncs those directories, and hands it back; the same goroutine later
// removes the staging name and closes the file, in batches, while creating
// the next ones. The durable steps of a delivery and their order are those
// of a per-delivery tmp file: the data and inode are on disk (fdatasync)
// before any new/ entry is created, and every new/ entry is on disk before
// Deliver returns.
//
// A pool file is always empty until a delivery takes it; a crash leaves
// empty or partly written files in root/.tmp, which CleanAllTmp removes at
// the next start (they carry our names and no lock). A mailbox directory on
// another filesystem than root/.tmp (link(2) cannot cross filesystems) is
// delivered to through its own tmp/ as before.

// stageDirName is the staging directory under the root.
const stageDirName = ".tmp"

// Pool sizing: the refiller tops the pool up to stageTarget ready files
// whenever it has fallen to stageLow, or stageLow files wait to be retired.
const (
	stageTarget = 32
	stageLow    = stageTarget / 2
)

// stagedFile is a tmp file of a delivery: open, locked, named path.
type stagedFile struct {
	f      *os.File
	path   string
	staged bool // from the pool: retire it when delivered
}

// stager owns root/.tmp and its pool.
type stager struct {
	dir    string
	log    *slog.Logger
	create func(path string) (*os.File, error) // createTmp

	mu        sync.Mutex
	dev       uint64 // device of dir, once made
	made      bool   // dir exists (made or found by this process)
	ready     []*stagedFile
	retired   []*stagedFile // delivered or given back: remove name, close
	refilling bool
	closed    bool
	idle      sync.Cond // signalled when refilling ends
}

func newStager(root string, log *slog.Logger, create func(string) (*os.File, error)) *stager {
	s := &stager{dir: filepath.Join(root, stageDirName), log: log, create: create}
	s.idle.L = &s.mu
	return s
}

// ensureDir creates the staging directory if needed and returns its
// device. Its entry need not be durable: nothing in it is.
func (s *stager) ensureDir() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.made {
		return s.dev, nil
	}
	if err := mkdirExisting(s.dir); err != nil {
		return 0, err
	}
	dev, err := deviceOf(s.dir)
	if err != nil {
		return 0, err
	}
	s.dev, s.made = dev, true
	return dev, nil
}

// deviceOf returns the device number of the filesystem holding path.
func deviceOf(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return uint64(st.Dev), nil
}

// take returns an empty staged file: one from the pool, or, when the pool
// is empty, one created now. It starts a refill when the pool runs low.
func (s *stager) take() (*stagedFile, error) {
	if _, err := s.ensureDir(); err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		var sf *stagedFile
		if n := len(s.ready); n > 0 {
			sf = s.ready[n-1]
			s.ready[n-1] = nil
			s.ready = s.ready[:n-1]
		}
		s.kickLocked()
		s.mu.Unlock()
		if sf == nil {
			return s.make()
		}
		// A pool file removed behind our back (a tmp cleaner that ignores
		// locks, the directory deleted) could not be linked: drop it and
		// take another, or make one.
		if same, err := sameFile(sf.f, sf.path); err == nil && same {
			return sf, nil
		}
		s.log.Warn("maildir: a prepared tmp file was removed by someone else", "path", sf.path)
		sf.f.Close()
		if _, err := os.Stat(s.dir); err != nil {
			s.mu.Lock()
			s.made = false
			stale := s.ready
			s.ready = nil
			s.mu.Unlock()
			for _, o := range stale {
				s.drop(o)
			}
			if _, err := s.ensureDir(); err != nil {
				return nil, err
			}
		}
	}
}

// make creates one staged file.
func (s *stager) make() (*stagedFile, error) {
	path := filepath.Join(s.dir, newID()+msgExt)
	f, err := s.create(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// The staging directory was removed behind our back: make it
			// again next time.
			s.mu.Lock()
			s.made = false
			s.mu.Unlock()
		}
		return nil, err
	}
	return &stagedFile{f: f, path: path}, nil
}

// retire hands a staged file back after a delivery that linked it
// everywhere (and synced those links): its staging name is removed and the
// file closed later, by the refiller. After Close it is done at once.
func (s *stager) retire(sf *stagedFile) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.drop(sf)
		return
	}
	s.retired = append(s.retired, sf)
	s.kickLocked()
	s.mu.Unlock()
}

// drop removes the staging name of sf and closes it (the name first, so
// the flock protects it until it is gone).
func (s *stager) drop(sf *stagedFile) {
	if err := os.Remove(sf.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("maildir: cannot remove staged file", "path", sf.path, "err", err)
	}
	if err := sf.f.Close(); err != nil {
		s.log.Warn("maildir: close staged file", "path", sf.path, "err", err)
	}
}

// kickLocked starts the refiller if there is work for it. s.mu is held.
func (s *stager) kickLocked() {
	if s.refilling || s.closed || !s.made {
		return
	}
	if len(s.ready) > stageLow && len(s.retired) < stageLow {
		return
	}
	s.refilling = true
	go s.refill()
}

// refill retires what was handed back and tops the pool up, until there is
// nothing left to do; it exits then (no goroutine lives while the Maildir
// is idle).
func (s *stager) refill() {
	s.mu.Lock()
	defer func() {
		s.refilling = false
		s.idle.Broadcast()
		s.mu.Unlock()
	}()
	for !s.closed {
		retired := s.retired
		s.retired = nil
		need := stageTarget - len(s.ready)
		if len(retired) == 0 && need <= 0 {
			return
		}
		s.mu.Unlock()
		for _, sf := range retired {
			s.drop(sf)
		}
		var made []*stagedFile
		for range max(need, 0) {
			sf, err := s.make()
			if err != nil {
				// A full disk or a vanished directory: deliveries create
				// their own file (and report the error) until it clears.
				s.log.Warn("maildir: cannot prepare staged file", "dir", s.dir, "err", err)
				break
			}
			made = append(made, sf)
		}
		s.mu.Lock()
		s.ready = append(s.ready, made...)
		if len(made) < need {
			// Retry only when a later take or retire asks for it.
			if len(s.retired) == 0 {
				return
			}
		}
	}
}

// close stops refilling and removes every pooled and retired file. Staged
// files taken by deliveries still running are retired (dropped at once) by
// them.
func (s *stager) close() {
	s.mu.Lock()
	s.closed = true
	for s.refilling {
		s.idle.Wait()
	}
	files := append(s.ready, s.retired...)
	s.ready, s.retired = nil, nil
	s.mu.Unlock()
	for _, sf := range files {
		s.drop(sf)
	}
}

// pooled returns the number of ready files (tests).
func (s *stager) pooled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ready)
}

// wait blocks until no refill runs (tests).
func (s *stager) wait() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.refilling {
		s.idle.Wait()
	}
}
