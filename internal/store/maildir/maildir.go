package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"sync"
	"syscall"
	"time"
)

// Permissions of what the Maildir creates: mail is private to the server's
// user.
const (
	dirPerm  = 0o700
	filePerm = 0o600
)

// Subdirectories of a Maildir mailbox (https://cr.yp.to/proto/maildir.html).
const (
	subTmp = "tmp"
	subNew = "new"
	subCur = "cur"
)

// msgExt is the extension of every message file we write.
const msgExt = ".eml"

// tmpExt is the extension of our tmp files (staged files in root/.tmp and
// tmp/<id>.tmp in a mailbox): never msgExt, so that `find root -name
// '*.eml'` lists the delivered messages only, each once per mailbox, at
// every instant. Versions before it named tmp files <id>.eml; CleanTmp
// and Recover remove those leftovers too.
const tmpExt = ".tmp"

// copyBufSize is the buffer Deliver streams a message through (after the
// normalizing reader's own normBufSize); up to maxIdleBufs of these buffer
// pairs are kept between deliveries.
const (
	copyBufSize = 64 << 10
	maxIdleBufs = 32
)

// getBuf returns a buffer for Deliver: normBufSize octets for the
// normalizing reader, then copyBufSize for the copy.
func (m *Maildir) getBuf() *[]byte {
	select {
	case b := <-m.bufs:
		return b
	default:
		b := make([]byte, normBufSize+copyBufSize)
		return &b
	}
}

// putBuf keeps b for reuse, unless enough are kept.
func (m *Maildir) putBuf(b *[]byte) {
	select {
	case m.bufs <- b:
	default:
	}
}

// copyFilled copies r to w through buf, writing only full buffers and the
// rest at the end: a message shorter than buf takes one write(2), however
// many reads it arrives in (the trace header and the body are two).
func copyFilled(w io.Writer, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		// Not io.ReadFull: it reports a short final read as
		// io.ErrUnexpectedEOF, the error a truncated message gives too.
		k := 0
		var rerr error
		for k < len(buf) && rerr == nil {
			var m int
			m, rerr = r.Read(buf[k:])
			k += m
		}
		if k > 0 {
			wk, werr := w.Write(buf[:k])
			n += int64(wk)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// staleForeignTmp is the age after which a tmp/ file not named by us is
// considered abandoned. The Maildir specification: "When you look through
// tmp, you may find old files; delete those not accessed in 36 hours."
const staleForeignTmp = 36 * time.Hour

// Options configures a Maildir.
type Options struct {
	// Logger receives operational messages (cleanup of leftovers, failures
	// to undo a failed delivery). Nil discards them.
	Logger *slog.Logger

	// FsyncHook, if set, is called with the path of a directory each time
	// the Maildir is about to fsync that directory (mailbox creation, the
	// new/ directories of a delivery, the directories of a Commit). It lets
	// tests and metrics count directory fsyncs; it must be quick and safe for
	// concurrent use. File data fsyncs are not reported.
	FsyncHook func(dir string)

	// FsyncDone, if set, is called after each directory fsync that
	// FsyncHook announces, with how long the fsync took and its error
	// (metrics: fsync latency). Same rules as FsyncHook.
	FsyncDone func(dir string, took time.Duration, err error)

	// MinFreeSpace is the free space in octets on the root's filesystem
	// below which FreeSpace reports store.ErrNoSpace (see space.go): 0
	// (the zero value) turns the check off, AutoMinFreeSpace picks
	// 100 MiB or 1 % of the filesystem, whichever is smaller.
	MinFreeSpace int64
}

// Maildir is a store.Store keeping one standard Maildir per mailbox under a root
// directory: root/<mailbox>/{tmp,new,cur}, one file per message named
// <id>.eml. It is safe for concurrent use, and several processes may share
// one root: locks are flock(2) locks and ids are unique across processes.
type Maildir struct {
	root      string
	log       *slog.Logger
	index     MaildropIndex // UseIndex
	syncers   syncerSet
	known     sync.Map // mailbox name -> uint64 device: its directories exist durably
	noStage   sync.Map // mailbox name -> struct{}: link from the staging directory fails (EXDEV)
	stage     *stager
	bufs      chan *[]byte // copy buffers kept for reuse (a sync.Pool is emptied by every GC)
	space     spaceCheck   // FreeSpace's floor and cached answer
	fmu       sync.Mutex
	folders   map[string]*folderShared // folder directory -> state shared by its open Folders (folder.go)
	store.Hub                          // Subscribe and Publish (store.Events)
}

var _ store.Store = (*Maildir)(nil)

// New returns the Maildir rooted at root, creating root (and its
// missing parents) if it does not exist. It reads nothing below root: the
// caller may run Recover at start-up to remove crash leftovers.
func New(root string, opts Options) (*Maildir, error) {
	if root == "" {
		return nil, errors.New("maildir: empty root path")
	}
	root = filepath.Clean(root)
	m := &Maildir{root: root, log: opts.Logger, space: spaceCheck{floor: opts.MinFreeSpace}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	hook, done := opts.FsyncHook, opts.FsyncDone
	m.syncers.fsync = func(dir string) error {
		if hook != nil {
			hook(dir)
		}
		if done == nil {
			return syncDir(dir)
		}
		t0 := time.Now()
		err := syncDir(dir)
		done(dir, time.Since(t0), err)
		return err
	}
	m.stage = newStager(root, m.log)
	m.bufs = make(chan *[]byte, maxIdleBufs)
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(root, dirPerm); err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
		// Make the new root's entry durable in its parent.
		if err := m.syncers.get(filepath.Dir(root)).Sync(); err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("maildir: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("maildir: %s is not a directory", root)
	}
	return m, nil
}

// Close removes the empty tmp files the Maildir prepared for deliveries
// (see stage.go). Deliveries may still run during and after Close; they
// then create their tmp files one by one.
func (m *Maildir) Close() error {
	m.stage.close()
	m.closeFolders()
	return nil
}

// Root returns the root directory.
func (m *Maildir) Root() string { return m.root }

// noSpace maps a disk-full error (ENOSPC, or EDQUOT for a quota) to an error
// that wraps both store.ErrNoSpace and err, so errors.Is works for either. Other
// errors are returned unchanged.
func noSpace(err error) error {
	if err == nil || errors.Is(err, store.ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", store.ErrNoSpace, err)
	}
	return err
}

// mailboxDir returns root/<mailbox>.
func (m *Maildir) mailboxDir(mailbox string) string {
	return filepath.Join(m.root, mailbox)
}

// mkdirExisting creates dir unless it exists as a directory.
func mkdirExisting(dir string) error {
	err := os.Mkdir(dir, dirPerm)
	if errors.Is(err, fs.ErrExist) {
		fi, serr := os.Stat(dir)
		if serr != nil {
			return serr
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	return err
}

// ensureMailbox creates root/<mailbox>/{tmp,new,cur} as needed and makes
// the directory entries durable. The first call for a mailbox in this process
// fsyncs the root and the mailbox directory even when nothing was created:
// another goroutine or a crashed process may have created them without the
// fsync having completed yet. Later calls cost nothing.
func (m *Maildir) ensureMailbox(mailbox string) error {
	if _, ok := m.known.Load(mailbox); ok {
		return nil
	}
	dir := m.mailboxDir(mailbox)
	if err := mkdirExisting(dir); err != nil {
		return err
	}
	for _, sub := range []string{subTmp, subNew, subCur} {
		if err := mkdirExisting(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	if err := m.syncers.get(dir).Sync(); err != nil {
		return err
	}
	if err := m.syncers.get(m.root).Sync(); err != nil {
		return err
	}
	dev, err := deviceOf(dir)
	if err != nil {
		return err
	}
	m.known.Store(mailbox, dev)
	return nil
}

// forget drops mailbox from the set of mailboxes known to exist, after an
// error that suggests its directories were removed behind our back.
func (m *Maildir) forget(mailbox string, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		m.known.Delete(mailbox)
	}
}

// NewID implements store.Deliverer.
func (m *Maildir) NewID() string { return store.NewID() }

// Probe implements store.Lifecycle: it creates and removes a file in the
// root, which fails when the filesystem is full, read-only or gone.
func (m *Maildir) Probe() error {
	f, err := os.CreateTemp(m.root, ".postoffice-ready-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
