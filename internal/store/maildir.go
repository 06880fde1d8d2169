package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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

// MaildirOptions configures a Maildir.
type MaildirOptions struct {
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
}

// Maildir is a Store keeping one standard Maildir per mailbox under a root
// directory: root/<mailbox>/{tmp,new,cur}, one file per message named
// <id>.eml. It is safe for concurrent use, and several processes may share
// one root: locks are flock(2) locks and ids are unique across processes.
type Maildir struct {
	root    string
	log     *slog.Logger
	syncers syncerSet
	known   sync.Map // mailbox name -> uint64 device: its directories exist durably
	noStage sync.Map // mailbox name -> struct{}: link from the staging directory fails (EXDEV)
	stage   *stager
	bufs    chan *[]byte // copy buffers kept for reuse (a sync.Pool is emptied by every GC)
	hub     eventHub     // see Subscribe
}

var _ Store = (*Maildir)(nil)

// NewMaildir returns the Maildir rooted at root, creating root (and its
// missing parents) if it does not exist. It reads nothing below root: the
// caller may run CleanAllTmp at start-up to remove crash leftovers.
func NewMaildir(root string, opts MaildirOptions) (*Maildir, error) {
	if root == "" {
		return nil, errors.New("maildir: empty root path")
	}
	root = filepath.Clean(root)
	m := &Maildir{root: root, log: opts.Logger}
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
	return nil
}

// Root returns the root directory.
func (m *Maildir) Root() string { return m.root }

// ValidMailboxName reports whether name is a mailbox name the Maildir
// accepts: 1-64 characters of [a-z0-9._-], not starting with '.', without
// "..". Such a name is a single path element that cannot reach outside the
// root, cannot be a hidden Maildir++ folder, and has one spelling (callers
// lowercase user names first).
func ValidMailboxName(name string) bool {
	if len(name) < 1 || len(name) > 64 || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '.':
			if i > 0 && name[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// validID reports whether id can be a message file name stem: 1-70
// characters of 0x21-0x7E (the POP3 unique-id alphabet, RFC 1939 §7) without
// '/', ':' (the Maildir info separator) and not starting with '.'.
func validID(id string) bool {
	if len(id) < 1 || len(id) > 70 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x21 || c > 0x7e || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

// Message ids: 16 hex digits of a per-process strictly increasing
// UnixNano clock, '.', 8 hex digits drawn at random once per process, '.', 8
// hex digits of a per-process counter, e.g.
// "18a2b3c4d5e6f708.9f3e0a11.0000002a" (34 characters). Ids of one process
// are strictly increasing; ids of two processes differ in the random part
// (and almost always in the time); a restarted process starts later in time.
// Ids are never reused: the file is created with O_EXCL and linked with
// link(2), which never replaces an existing name.
const idLen = 16 + 1 + 8 + 1 + 8

var idGen struct {
	lastNano atomic.Int64
	counter  atomic.Uint32
	random   [4]byte
}

func init() {
	// crypto/rand.Read never fails on Linux (Go 1.24+ crashes instead).
	_, _ = rand.Read(idGen.random[:])
}

// NewID returns a fresh message id (see idLen): unique, never reused,
// sortable by time of assignment, characters [0-9a-f.] only.
func (m *Maildir) NewID() string { return newID() }

func newID() string {
	var now int64
	for {
		last := idGen.lastNano.Load()
		now = time.Now().UnixNano()
		if now <= last {
			now = last + 1
		}
		if idGen.lastNano.CompareAndSwap(last, now) {
			break
		}
	}
	c := idGen.counter.Add(1)
	var b [idLen]byte
	putHex(b[0:16], uint64(now))
	b[16] = '.'
	hex.Encode(b[17:25], idGen.random[:])
	b[25] = '.'
	putHex(b[26:34], uint64(c))
	return string(b[:])
}

// putHex writes v as len(dst) lowercase hex digits, most significant first.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// isHex reports whether s is all lowercase hex digits.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isOurID reports whether id has the form NewID produces.
func isOurID(id string) bool {
	return len(id) == idLen && id[16] == '.' && id[25] == '.' &&
		isHex(id[0:16]) && isHex(id[17:25]) && isHex(id[26:34])
}

// ourFileID returns the id of a message file written by Deliver, whose name
// is "<id>.eml" optionally followed by a Maildir info suffix ":2,<flags>"
// added by a mail reader, and whether name has that form.
func ourFileID(name string) (string, bool) {
	if len(name) < idLen+len(msgExt) {
		return "", false
	}
	id, rest := name[:idLen], name[idLen:]
	if !isOurID(id) || rest[:len(msgExt)] != msgExt {
		return "", false
	}
	rest = rest[len(msgExt):]
	if rest != "" && (len(rest) < 3 || rest[:3] != ":2,") {
		return "", false
	}
	return id, true
}

// idTime returns the UnixNano time encoded in an id of ours.
func idTime(id string) int64 {
	var v uint64
	for i := 0; i < 16; i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		default:
			v = v<<4 | uint64(c-'a'+10)
		}
	}
	return int64(v)
}

// noSpace maps a disk-full error (ENOSPC, or EDQUOT for a quota) to an error
// that wraps both ErrNoSpace and err, so errors.Is works for either. Other
// errors are returned unchanged.
func noSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
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

// ctxReader fails reads once ctx is done, so a cancelled delivery stops
// streaming.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// fdatasync flushes f's data and the metadata needed to read it back (its
// size) to stable storage.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if cerr := rc.Control(func(fd uintptr) {
		serr = retryEINTR(func() error { return syscall.Fdatasync(int(fd)) })
	}); cerr != nil {
		return cerr
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// Deliver implements Store. It streams the normal form of r (see
// normalize.go: bare LF stored as CRLF, a final CRLF added if missing; CRLF
// text ending in CRLF is stored unchanged) into an empty tmp file that no
// tmp cleaner removes: one prepared in this Maildir's locked directory in
// root/.tmp (stage.go), or root/<first>/tmp/<id>.eml under an exclusive
// flock for a mailbox the staging directory cannot link into (another
// filesystem or mount). If the staged file cannot be linked after all
// (EXDEV, or its name was removed), the delivery is redone from the data it
// holds, through the mailboxes' tmp/ or another staged file. It fdatasyncs the
// file, hard-links it as new/<id>.eml into every distinct mailbox, fsyncs
// each new/ directory (group commit, see dirSyncer) and only then returns
// nil; the tmp name is removed then, or soon after. On any error every
// link made and the tmp file are removed, and the error is returned wrapped
// as "deliver <id>: ..."; a full disk wraps ErrNoSpace too. Invalid mailbox
// names give ErrBadMailbox and nothing is written.
//
// Why a named tmp file rather than an unnamed one (O_TMPFILE + linkat): the
// unnamed file's inode is written by fdatasync with link count 0, and
// neither linkat nor the new/ fsync writes the new count (measured on ext4
// without a journal); after a power loss e2fsck treats such an inode as
// deleted and clears its entry, losing acknowledged mail. Writing the count
// takes an fsync of the file after the link, a third device flush per
// message, which measured slower than the tmp name it saves
// (docs/benchmarks.md; bench/experiments/otmpfile.patch).
func (m *Maildir) Deliver(ctx context.Context, id string, mailboxes []string, r io.Reader) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("deliver %s: %w", id, noSpace(err))
		}
	}()
	if !validID(id) {
		return fmt.Errorf("invalid message id %q", id)
	}
	boxes := make([]string, 0, len(mailboxes))
	for _, mb := range mailboxes {
		if !ValidMailboxName(mb) {
			return fmt.Errorf("mailbox %q: %w", mb, ErrBadMailbox)
		}
		dup := false
		for _, b := range boxes {
			if b == mb {
				dup = true
				break
			}
		}
		if !dup {
			boxes = append(boxes, mb)
		}
	}
	if len(boxes) == 0 {
		return errors.New("no mailbox")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, mb := range boxes {
		if err := m.ensureMailbox(mb); err != nil {
			return fmt.Errorf("mailbox %s: %w", mb, err)
		}
	}

	name := id + msgExt
	sf, err := m.stageFor(boxes, name)
	if err != nil {
		return err
	}
	f, tmpPath := sf.f, sf.path
	var linked []string
	settled := false // the tmp file was handed back
	defer func() {
		// Any way out but success, a panic included, undoes the delivery.
		if settled {
			return
		}
		m.unlink(id, linked)
		if rerr := os.Remove(tmpPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			m.log.Error("maildir: cannot remove tmp file of failed delivery", "id", id, "path", tmpPath, "err", rerr)
		}
		f.Close()
		if sf.staged {
			m.stage.abandon(sf)
		}
	}()

	bp := m.getBuf()
	// Our files are always in the normal form (CRLF line ends, ending in
	// CRLF): that is what lets OpenMaildrop take their size from stat. For
	// the CRLF text the SMTP engine hands over this is a copy, not a change.
	buf := *bp
	size, err := copyFilled(f, newCRLFReaderBuf(ctxReader{ctx, r}, buf[:normBufSize]), buf[normBufSize:])
	m.putBuf(bp)
	if err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, mb := range boxes {
		p := filepath.Join(m.mailboxDir(mb), subNew, name)
		if err := os.Link(tmpPath, p); err != nil {
			exdev := errors.Is(err, syscall.EXDEV)
			gone := errors.Is(err, fs.ErrNotExist) && !exists(tmpPath)
			if sf.staged && (exdev || gone) {
				if exdev {
					// The mailbox is on another mount than the staging
					// directory although on the same filesystem (a
					// bind mount): from now on it is delivered to
					// through its own tmp/.
					m.noStage.Store(mb, struct{}{})
					m.log.Warn("maildir: mailbox on another mount than the staging directory; delivering through its tmp/", "mailbox", mb)
				} else {
					// Someone removed the staged file (a tmp cleaner
					// that ignores locks, the staging directory deleted).
					m.log.Warn("maildir: staged file removed by someone else; delivering again", "id", id, "path", tmpPath)
					m.stage.lost(sf)
				}
				// Deliver again from the data written, which the open
				// file still holds.
				m.unlink(id, linked)
				linked = nil
				if err := m.Deliver(ctx, id, mailboxes, io.NewSectionReader(f, 0, size)); err != nil {
					return errors.Unwrap(err)
				}
				settled = true
				m.stage.drop(sf)
				m.stage.abandon(sf)
				return nil
			}
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Stat(filepath.Dir(p)); serr != nil {
					m.forget(mb, serr)
				}
			}
			return err
		}
		linked = append(linked, p)
	}
	for _, mb := range boxes {
		if err := m.syncers.get(filepath.Join(m.mailboxDir(mb), subNew)).Sync(); err != nil {
			return err
		}
	}
	// The message is durable in every mailbox. Removing the tmp name can
	// wait: a name we fail to remove, or that a crash leaves, is harmless
	// (CleanAllTmp removes it at the next start).
	settled = true
	if sf.staged {
		m.stage.retire(sf)
	} else {
		if rerr := os.Remove(tmpPath); rerr != nil {
			m.log.Warn("maildir: cannot remove tmp file", "id", id, "path", tmpPath, "err", rerr)
		}
		if cerr := f.Close(); cerr != nil {
			m.log.Warn("maildir: close tmp file", "id", id, "err", cerr)
		}
	}
	for _, mb := range boxes {
		m.Publish(Event{Kind: EventArrived, Mailbox: mb, IDs: []string{id}, Size: size})
	}
	return nil
}

// exists reports whether path names a file: true unless lstat says it
// does not exist.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// unlink removes the links of a delivery that failed, then syncs their
// directories: one of them may have been made durable by a concurrent
// delivery's fsync, and its entry must not outlive the file it names once
// the tmp name is removed.
func (m *Maildir) unlink(id string, linked []string) {
	for _, p := range linked {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Error("maildir: cannot remove link of failed delivery", "id", id, "path", p, "err", err)
		}
	}
	for _, p := range linked {
		if err := m.syncers.get(filepath.Dir(p)).Sync(); err != nil {
			m.log.Error("maildir: cannot sync directory after removing a failed delivery", "id", id, "dir", filepath.Dir(p), "err", err)
		}
	}
}

// stageFor returns the empty tmp file a delivery to boxes writes into: a
// staged one (see stage.go) when every mailbox is on the staging
// directory's filesystem and mount, else tmp/<name> in the first mailbox.
func (m *Maildir) stageFor(boxes []string, name string) (*stagedFile, error) {
	dev, err := m.stage.ensureDir()
	if err != nil && !errors.Is(err, errStagerClosed) && !errors.Is(err, errStageBackoff) {
		m.log.Warn("maildir: cannot make the staging directory; using the mailbox's tmp/ for a while", "err", err, "for", stageBackoff)
	}
	if err == nil {
		same := true
		for _, mb := range boxes {
			v, ok := m.known.Load(mb)
			if !ok || v.(uint64) != dev {
				same = false
				break
			}
			if _, no := m.noStage.Load(mb); no {
				same = false
				break
			}
		}
		if same {
			sf, err := m.stage.take()
			if err == nil {
				return sf, nil
			}
			if !errors.Is(err, errStagerClosed) && !errors.Is(err, errStageBackoff) {
				m.log.Warn("maildir: cannot stage a delivery; using the mailbox's tmp/ for a while", "err", err, "for", stageBackoff)
			}
		}
	}
	path := filepath.Join(m.mailboxDir(boxes[0]), subTmp, name)
	f, err := m.createTmp(path)
	if err != nil {
		m.forget(boxes[0], err)
		return nil, err
	}
	return &stagedFile{f: f, path: path}, nil
}

// createTmp creates path exclusively and takes an exclusive flock on it. A
// tmp cleaner (CleanTmp of this or another process) may open and lock the
// fresh file in the instant between create and flock and then remove it;
// so after locking, createTmp checks that path still names its file and
// starts over if not.
func (m *Maildir) createTmp(path string) (*os.File, error) {
	for range 3 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
		if err != nil {
			return nil, err
		}
		if err := flock(f, syscall.LOCK_EX); err != nil {
			f.Close()
			os.Remove(path)
			return nil, err
		}
		same, err := sameFile(f, path)
		if err != nil {
			f.Close()
			return nil, err
		}
		if same {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("create %s: removed concurrently, giving up", path)
}

// CleanTmp removes leftovers of crashed deliveries from root/<mailbox>/tmp
// and returns how many files it removed. A file named by us is removed when
// its flock can be taken, that is when no delivery (of any process) is
// writing it. Any other file is left to its writer (another MDA, which does
// not use our locks) unless it is older than 36 hours, the Maildir
// specification's rule for abandoned tmp files. CleanTmp never reads new/ or
// cur/. A mailbox that does not exist has nothing to clean.
func (m *Maildir) CleanTmp(mailbox string) (removed int, err error) {
	if !ValidMailboxName(mailbox) {
		return 0, fmt.Errorf("clean tmp %q: %w", mailbox, ErrBadMailbox)
	}
	return m.cleanTmpDir(mailbox, filepath.Join(m.mailboxDir(mailbox), subTmp))
}

// cleanTmpDir is CleanTmp of one directory; label names it in errors and
// logs.
func (m *Maildir) cleanTmpDir(label, dir string) (removed int, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean tmp %s: %w", label, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		ok, err := m.cleanTmpFile(path, e)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed++
			m.log.Info("maildir: removed leftover tmp file", "mailbox", label, "file", e.Name())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("clean tmp %s: %w", label, err)
	}
	return removed, nil
}

// cleanTmpFile removes one tmp file if it is abandoned (see CleanTmp).
func (m *Maildir) cleanTmpFile(path string, e fs.DirEntry) (bool, error) {
	if id, ok := ourFileID(e.Name()); !ok || id+msgExt != e.Name() {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if time.Since(fi.ModTime()) < staleForeignTmp {
			return false, nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		return true, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := tryLock(f); err != nil {
		if errors.Is(err, ErrLocked) {
			return false, nil // a live delivery
		}
		return false, err
	}
	// Remove the name only if it is still the file we locked, and do it
	// while holding the lock (see createTmp).
	same, err := sameFile(f, path)
	if err != nil || !same {
		return false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// cleanStaging removes what crashed processes left in the staging
// directory root/.tmp (stage.go): in every instance directory whose flock
// can be taken (its process is gone) the files CleanTmp would remove, then
// the directory itself. Live instances, this process's included, are
// skipped.
func (m *Maildir) cleanStaging() (removed int, err error) {
	base := filepath.Join(m.root, stageDirName)
	removed, err = m.cleanTmpDir(stageDirName, base)
	errs := []error{err}
	entries, err := os.ReadDir(base)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("clean tmp %s: %w", stageDirName, err))
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(base, e.Name())
		lock, err := os.Open(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err := tryLock(lock); err != nil {
			lock.Close()
			if !errors.Is(err, ErrLocked) {
				errs = append(errs, err)
			}
			continue // a live Maildir's
		}
		n, err := m.cleanTmpDir(filepath.Join(stageDirName, e.Name()), dir)
		removed += n
		errs = append(errs, err)
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
			errs = append(errs, err)
		}
		lock.Close()
	}
	return removed, errors.Join(errs...)
}

// CleanAllTmp runs CleanTmp on the staging directory root/.tmp and on every
// mailbox under the root (directories whose name is a valid mailbox name)
// and returns the total removed. It is meant for start-up and reads only the
// root and the tmp directories.
func (m *Maildir) CleanAllTmp() (removed int, err error) {
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return 0, fmt.Errorf("clean tmp: %w", err)
	}
	removed, err = m.cleanStaging()
	errs := []error{err}
	for _, e := range entries {
		if !e.IsDir() || !ValidMailboxName(e.Name()) {
			continue
		}
		n, err := m.CleanTmp(e.Name())
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
