package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"
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
// need by one background goroutine in a staging directory of its own,
// root/.tmp/<instance> (.tmp is a name no mailbox can have). The instance
// directory is locked with flock while the Maildir uses it, and tmp
// cleaners (Recover, of this or another process) skip locked instance
// directories whole, so its files need no lock of their own. A delivery
// takes one, writes and fdatasyncs it, links it into new/ of its mailboxes,
// syncs those directories, and hands it back; the same goroutine later
// removes the staging name and closes the file, in batches, while creating
// the next ones. The durable steps of a delivery and their order are those
// of a per-delivery tmp file: the data and inode are on disk (fdatasync)
// before any new/ entry is created, and every new/ entry is on disk before
// Deliver returns.
//
// A pool file is always empty until a delivery takes it; a crash leaves
// empty or partly written files in an unlocked instance directory, which
// Recover removes at the next start (they carry our names and no lock),
// with the directory. A mailbox directory on
// another filesystem than root/.tmp (link(2) cannot cross filesystems) is
// delivered to through its own tmp/ as before.

// stageDirName is the staging directory under the root. Each Maildir
// value (each server process) works in a directory of its own inside it,
// root/.tmp/<instance>, which it holds under an flock while it lives.
const stageDirName = ".tmp"

// Pool sizing: the refiller tops the pool up to stageTarget ready files
// whenever it has fallen to stageLow, or stageLow files wait to be retired.
const (
	stageTarget = 32
	stageLow    = stageTarget / 2
)

// Relocation. ext4 without a journal allocates a file's inode in its
// directory's block group and, for about five minutes after inodes of that
// group were freed, checks every free inode of the group one by one (its
// allocator avoids reusing them): after a mass deletion there (a POP3 client
// deleting thousands of messages, another program's cleanup) each creation
// costs milliseconds instead of tens of microseconds. A fresh directory in
// root/.tmp, which has the top-directory attribute, lands in a block group
// ext4 picks anew (its Orlov allocator, seeded by the name), so when a
// refill finds creations that slow the stager moves to a new instance
// directory; the old one is removed once its last file is gone.
//
// Slow is measured two ways over a refill's creations: the CPU time of the
// thread that made them (the allocator's scan is CPU work when the inode
// tables are cached: measured at 475 to 568 µs per file after a mass
// deletion, where a quiet group costs 26 to 74 µs; at 2,000 messages a
// second that is a core), and wall time (the same scan reading inode tables
// from disk). CPU time does not grow with the preemption that stretches
// wall time on a busy machine.
var stageSlowCreateCPU = 200 * time.Microsecond // mean CPU time per file that moves (a var for tests)

const stageSlowCreate = 2 * time.Millisecond // mean wall time per file that moves

const stageMinRelocate = time.Minute // at most one move per minute

// stageRetireDelay bounds how long a delivered file keeps its staging name
// when fewer than stageLow deliveries are waiting to be retired: a message
// deleted from its mailbox soon after must not keep its data (and disk
// space) through a forgotten name in root/.tmp.
const stageRetireDelay = 50 * time.Millisecond

// stageBackoff is how long deliveries bypass the stager (using their
// mailbox's tmp/) after it could not make a directory or file: a staging
// directory that cannot be written (permissions, read-only, no inodes)
// costs one failed attempt and one log line per period, not per delivery.
const stageBackoff = 10 * time.Second

// stagedFile is a tmp file of a delivery: open for reading and writing,
// named path.
type stagedFile struct {
	f      *os.File
	path   string
	staged bool           // from the stager: retire it when delivered
	inst   *stageInstance // its instance directory (staged files)
}

// stageInstance is one instance directory and the open file holding its
// flock. The lock is kept until the directory is removed, which waits for
// the files deliveries took from it.
type stageInstance struct {
	path    string
	lock    *os.File
	taken   int  // files handed to deliveries and not yet given back
	closing bool // remove the directory when taken drops to 0
}

// errStagerClosed is returned by take after close; errStageBackoff during
// stageBackoff after a failure (which take reported).
var (
	errStagerClosed = errors.New("maildir: staging closed")
	errStageBackoff = errors.New("maildir: staging failed recently")
)

// stager owns this Maildir's instance directory in root/.tmp and its pool.
type stager struct {
	base string // root/.tmp
	log  *slog.Logger

	mu        sync.Mutex
	cur       *stageInstance // nil until made, and after it vanished
	dev       uint64         // device of cur
	old       []*stageInstance
	moved     time.Time // last relocation
	ready     []*stagedFile
	retired   []*stagedFile // delivered: remove the name, close
	refilling bool
	closed    bool
	idle      sync.Cond   // signalled when refilling ends
	timer     *time.Timer // pending retire flush (stageRetireDelay)
	failed    time.Time   // last failure to make a directory or file
}

func newStager(root string, log *slog.Logger) *stager {
	s := &stager{base: filepath.Join(root, stageDirName), log: log}
	s.idle.L = &s.mu
	return s
}

// ensureDir makes the instance directory if there is none and returns its
// device. Its entry need not be durable: nothing in it is.
func (s *stager) ensureDir() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStagerClosed
	}
	if s.cur != nil {
		return s.dev, nil
	}
	if s.backoffLocked() {
		return 0, errStageBackoff
	}
	if err := s.newInstanceLocked(); err != nil {
		s.failed = time.Now()
		return 0, err
	}
	return s.dev, nil
}

// newInstanceLocked makes a new instance directory, locks it and makes it
// current; the previous one, if any, is kept until empty. s.mu is held.
func (s *stager) newInstanceLocked() error {
	if err := mkdirExisting(s.base); err != nil {
		return err
	}
	markTopDir(s.base)
	path := filepath.Join(s.base, store.NewID())
	if err := os.Mkdir(path, dirPerm); err != nil {
		return err
	}
	lock, err := os.Open(path)
	if err != nil {
		os.Remove(path)
		return err
	}
	// Fresh, so only a cleaner that opened it in this instant can hold
	// the lock; it would then remove the directory, and the creations in
	// it fail until the stager makes another.
	if err := tryLock(lock); err != nil {
		lock.Close()
		return err
	}
	dev, err := deviceOf(path)
	if err != nil {
		lock.Close()
		os.Remove(path)
		return err
	}
	if s.cur != nil {
		s.old = append(s.old, s.cur)
	}
	s.cur, s.dev = &stageInstance{path: path, lock: lock}, dev
	return nil
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
// The caller gives the file back with retire (delivered) or abandon.
func (s *stager) take() (*stagedFile, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errStagerClosed
		}
		var sf *stagedFile
		if len(s.ready) > 0 {
			// Oldest first, so that files of an instance directory left
			// behind by a move are used up and it can go.
			sf = s.ready[0]
			s.ready[0] = nil
			s.ready = s.ready[1:]
			sf.inst.taken++
		}
		backoff := s.backoffLocked()
		if !backoff {
			s.kickLocked()
		}
		s.mu.Unlock()
		if sf == nil {
			break
		}
		// A pool file whose name someone removed (a cleaner that ignores
		// locks, the directory deleted) has no links left: it could not
		// be linked into new/. One fstat tells.
		var st syscall.Stat_t
		if err := syscall.Fstat(int(sf.f.Fd()), &st); err == nil && st.Nlink > 0 {
			return sf, nil
		}
		s.log.Warn("maildir: a prepared tmp file was removed by someone else", "path", sf.path)
		sf.f.Close()
		s.release(sf.inst)
		s.lost(sf)
	}
	s.mu.Lock()
	backoff := s.backoffLocked()
	s.mu.Unlock()
	if backoff {
		return nil, errStageBackoff
	}
	sf, err := s.make(true)
	if err != nil {
		s.mu.Lock()
		s.failed = time.Now()
		s.mu.Unlock()
	}
	return sf, err
}

// make creates one staged file in the current instance directory, making
// that directory first if needed (or again, if it was removed). taken says
// whether the file goes to a delivery now (else to the pool).
func (s *stager) make(taken bool) (*stagedFile, error) {
	for attempt := 0; ; attempt++ {
		if _, err := s.ensureDir(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		inst := s.cur
		if inst != nil && taken {
			inst.taken++ // keeps the directory (and its lock) until given back
		}
		s.mu.Unlock()
		var err error
		if inst != nil {
			path := filepath.Join(inst.path, store.NewID()+tmpExt)
			var f *os.File
			if f, err = createFile(path); err == nil {
				return &stagedFile{f: f, path: path, staged: true, inst: inst}, nil
			}
			if taken {
				s.release(inst)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		if attempt == 2 {
			if err == nil {
				err = fs.ErrNotExist
			}
			return nil, fmt.Errorf("maildir: staging directory keeps vanishing: %w", err)
		}
		// The instance directory was removed behind our back: make
		// another.
		if inst != nil {
			s.forget(inst)
		}
	}
}

// threadCPUTime returns the CPU time used by the calling OS thread
// (clock_gettime(CLOCK_THREAD_CPUTIME_ID)), and false if it cannot be read.
// The caller locks the goroutine to its thread.
func threadCPUTime() (time.Duration, bool) {
	const clockThreadCPUTimeID = 3 // linux/time.h
	var ts syscall.Timespec
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

// createFile creates path (it must not exist) for reading and writing,
// like os.OpenFile with O_RDWR|O_CREATE|O_EXCL, in two system calls where
// os.OpenFile makes six: it would also try to register a regular file with
// the network poller (fcntl calls and a failing epoll_ctl), once per
// message.
func createFile(path string) (*os.File, error) {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, filePerm)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// forget stops using inst, whose directory was removed behind our back:
// its pool files go (their names went with it), and the refiller drops its
// lock once no delivery holds a file of it.
func (s *stager) forget(inst *stageInstance) {
	var stale []*stagedFile
	s.mu.Lock()
	if s.cur == inst {
		s.cur = nil
		s.old = append(s.old, inst)
	}
	s.ready = slices.DeleteFunc(s.ready, func(sf *stagedFile) bool {
		if sf.inst == inst {
			stale = append(stale, sf)
			return true
		}
		return false
	})
	s.mu.Unlock()
	for _, sf := range stale {
		sf.f.Close()
	}
}

// lost is told by a delivery that its staged file's name is gone. If the
// whole instance directory is, the stager forgets it.
func (s *stager) lost(sf *stagedFile) {
	if !exists(sf.inst.path) {
		s.forget(sf.inst)
	}
}

// release gives back a file taken from inst; the last one of a closing
// instance removes its directory and drops its lock.
func (s *stager) release(inst *stageInstance) {
	s.mu.Lock()
	inst.taken--
	done := inst.closing && inst.taken == 0
	s.mu.Unlock()
	if done {
		os.Remove(inst.path)
		inst.lock.Close()
	}
}

// abandon gives back a staged file of a delivery that failed, after the
// delivery removed its name and closed it.
func (s *stager) abandon(sf *stagedFile) {
	s.release(sf.inst)
}

// retire hands a staged file back after a delivery that linked it
// everywhere (and synced those links): its staging name is removed and the
// file closed later, by the refiller. After close it is done at once.
func (s *stager) retire(sf *stagedFile) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.drop(sf)
		s.release(sf.inst)
		return
	}
	sf.inst.taken--
	s.retired = append(s.retired, sf)
	s.kickLocked()
	if s.timer == nil {
		s.timer = time.AfterFunc(stageRetireDelay, s.flushRetired)
	}
	s.mu.Unlock()
}

// flushRetired removes the staging names of the retired files that no
// refill pass took within stageRetireDelay (none ran, or it is busy making
// files).
func (s *stager) flushRetired() {
	s.mu.Lock()
	s.timer = nil
	if s.closed {
		s.mu.Unlock()
		return
	}
	retired := s.retired
	s.retired = nil
	s.mu.Unlock()
	for _, sf := range retired {
		s.drop(sf)
	}
}

// drop removes the staging name of sf and closes it.
func (s *stager) drop(sf *stagedFile) {
	if err := os.Remove(sf.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("maildir: cannot remove staged file", "path", sf.path, "err", err)
	}
	if err := sf.f.Close(); err != nil {
		s.log.Warn("maildir: close staged file", "path", sf.path, "err", err)
	}
}

// backoffLocked reports whether making files failed less than
// stageBackoff ago. s.mu is held.
func (s *stager) backoffLocked() bool {
	return !s.failed.IsZero() && time.Since(s.failed) < stageBackoff
}

// kickLocked starts the refiller if there is work for it. s.mu is held.
func (s *stager) kickLocked() {
	if s.refilling || s.closed {
		return
	}
	if len(s.ready) > stageLow && len(s.retired) < stageLow {
		return
	}
	s.refilling = true
	go s.refill()
}

// refill retires what was handed back, tops the pool up, moves to a new
// instance directory when creations got slow, and removes emptied old
// ones, until there is nothing left to do; it exits then (no goroutine
// lives while the Maildir is idle).
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
		if s.backoffLocked() {
			need = 0
		}
		var old []*stageInstance
		for _, inst := range s.old {
			if inst.taken == 0 && !s.hasReadyLocked(inst) {
				old = append(old, inst)
			}
		}
		if len(retired) == 0 && need <= 0 && len(old) == 0 {
			return
		}
		s.mu.Unlock()
		for _, sf := range retired {
			s.drop(sf)
		}
		var gone []*stageInstance
		for _, inst := range old {
			if err := os.Remove(inst.path); err == nil || errors.Is(err, fs.ErrNotExist) {
				inst.lock.Close()
				gone = append(gone, inst)
			}
		}
		made, slow := s.makeBatch(need)
		s.mu.Lock()
		s.old = slices.DeleteFunc(s.old, func(i *stageInstance) bool { return slices.Contains(gone, i) })
		s.ready = append(s.ready, made...)
		if slow != nil && time.Since(s.moved) > stageMinRelocate && !s.closed {
			from := s.cur
			if err := s.newInstanceLocked(); err != nil {
				s.log.Warn("maildir: cannot make a new staging directory", "err", err)
			} else {
				s.log.Info("maildir: file creation slow here, staging moved", append([]any{"from", from.path, "to", s.cur.path}, slow...)...)
				// The pool's files stay usable where they are.
			}
			s.moved = time.Now()
		}
		if len(retired) == 0 && len(made) == 0 && len(gone) == 0 {
			return // no progress (backoff, a directory not yet empty): wait for a later kick
		}
		if len(made) < need && len(s.retired) == 0 {
			return // retry when a later take or retire asks for it
		}
		if len(s.retired) == 0 && len(s.ready) >= stageTarget {
			return
		}
	}
}

// makeBatch creates up to need pool files (fewer if creation fails, which
// it records for the backoff). If creating them was slow (see Relocation),
// slow holds the figures for the log: mean wall time and, when the clock
// could be read, CPU time per file; else it is nil.
func (s *stager) makeBatch(need int) (made []*stagedFile, slow []any) {
	if need <= 0 {
		return nil, nil
	}
	// The thread is locked so that its CPU clock counts these creations
	// only.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, cpuOK := threadCPUTime()
	t0 := time.Now()
	for range need {
		sf, err := s.make(false)
		if err != nil {
			// A full disk or an unwritable directory: deliveries use their
			// mailbox's tmp/ for a while (take reports it).
			s.mu.Lock()
			s.failed = time.Now()
			s.mu.Unlock()
			break
		}
		made = append(made, sf)
	}
	n := time.Duration(len(made))
	if n < 4 {
		return made, nil
	}
	wall := time.Since(t0) / n
	c1, ok := threadCPUTime()
	cpuOK = cpuOK && ok
	cpu := (c1 - c0) / n
	if wall > stageSlowCreate || cpuOK && cpu > stageSlowCreateCPU {
		slow = []any{"per_file", wall}
		if cpuOK {
			slow = append(slow, "cpu_per_file", cpu)
		}
	}
	return made, slow
}

// hasReadyLocked reports whether a pool file lives in inst. s.mu is held.
func (s *stager) hasReadyLocked(inst *stageInstance) bool {
	for _, sf := range s.ready {
		if sf.inst == inst {
			return true
		}
	}
	return false
}

// close stops refilling and removes every pooled and retired file and the
// instance directories; a directory holding the file of a delivery still
// running is removed, and its lock dropped, when that delivery gives the
// file back. Later deliveries use their mailbox's tmp/.
func (s *stager) close() {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	for s.refilling {
		s.idle.Wait()
	}
	files := append(s.ready, s.retired...)
	s.ready, s.retired = nil, nil
	insts := s.old
	if s.cur != nil {
		insts = append(insts, s.cur)
	}
	s.cur, s.old = nil, nil
	for _, inst := range insts {
		// Held until our files are dropped: the last release (ours, or
		// that of a delivery still running) removes the directory.
		inst.taken++
		inst.closing = true
	}
	s.mu.Unlock()
	for _, sf := range files {
		s.drop(sf)
	}
	for _, inst := range insts {
		s.release(inst)
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
