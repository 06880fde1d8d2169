package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"slices"
	"strings"
	"syscall"
)

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

// Deliver implements store.Store. It streams the normal form of r (see
// normalize.go: bare LF stored as CRLF, a final CRLF added if missing; CRLF
// text ending in CRLF is stored unchanged) into an empty tmp file that no tmp
// cleaner removes: one prepared in this Maildir's locked directory in root/.tmp
// (stage.go), or root/<first>/tmp/<id>.tmp under an exclusive flock for a
// mailbox the staging directory cannot link into (another filesystem or mount).
// If the staged file cannot be linked after all (EXDEV, or its name was
// removed), the delivery is redone from the data it holds, through the
// mailboxes' tmp/ or another staged file. It fdatasyncs the file, hard-links it
// as new/<id>.eml into every distinct mailbox (one on another filesystem or
// mount than the tmp file gets a copy written and fdatasynced in its own
// tmp/: see linkCopy), fsyncs each new/ directory
// (group commit, see dirSyncer) and only then returns nil; the tmp name is
// removed then, or soon after. On any error every link made and the tmp file
// are removed, and the error is returned wrapped as "deliver <id>: ..."; a full
// disk wraps store.ErrNoSpace too. Invalid mailbox names give
// store.ErrBadMailbox and nothing is written.
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
	boxes, err := m.mailboxesOf(ctx, id, mailboxes)
	if err != nil {
		return err
	}
	name := id + msgExt
	sf, err := m.stageFor(boxes, name)
	if err != nil {
		return err
	}
	d := delivery{m: m, id: id, name: name, boxes: boxes, sf: sf}
	defer d.undo() // any way out but success, a panic included
	size, err := d.write(ctx, r)
	if err != nil {
		return err
	}
	d.size = size
	if err := d.link(); err != nil {
		if !d.redoable(err) {
			return err
		}
		return d.redo(ctx, mailboxes, size)
	}
	if err := d.syncNew(); err != nil {
		return err
	}
	d.settle()
	for _, mb := range boxes {
		m.Publish(store.Event{Kind: store.EventArrived, Mailbox: mb, IDs: []string{id}, Size: size})
	}
	return nil
}

// mailboxesOf checks a delivery's id and mailboxes and returns the
// distinct mailboxes, whose directories then exist durably.
func (m *Maildir) mailboxesOf(ctx context.Context, id string, mailboxes []string) ([]string, error) {
	if !validID(id) {
		return nil, fmt.Errorf("invalid message id %q", id)
	}
	boxes := make([]string, 0, len(mailboxes))
	for _, mb := range mailboxes {
		if !store.ValidMailboxName(mb) {
			return nil, fmt.Errorf("mailbox %q: %w", mb, store.ErrBadMailbox)
		}
		if !slices.Contains(boxes, mb) {
			boxes = append(boxes, mb)
		}
	}
	if len(boxes) == 0 {
		return nil, errors.New("no mailbox")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, mb := range boxes {
		if err := m.ensureMailbox(mb); err != nil {
			return nil, fmt.Errorf("mailbox %s: %w", mb, err)
		}
	}
	return boxes, nil
}

// delivery is one Deliver in progress: its tmp file and the links made so
// far.
type delivery struct {
	m       *Maildir
	id      string
	name    string   // <id>.eml
	boxes   []string // distinct mailboxes
	sf      *stagedFile
	size    int64         // octets written to sf
	copies  []*stagedFile // copies of sf in tmp/ of mailboxes sf cannot be linked into
	linked  []string      // new/ names made so far
	settled bool          // the tmp file was handed back: nothing to undo
}

// write streams the normal form of r into the tmp file and makes it
// durable (fdatasync). Our files are always in the normal form (CRLF line
// ends, ending in CRLF): that is what lets OpenMaildrop take their size
// from stat. For the CRLF text the SMTP engine hands over this is a copy,
// not a change.
func (d *delivery) write(ctx context.Context, r io.Reader) (int64, error) {
	bp := d.m.getBuf()
	buf := *bp
	size, err := copyFilled(d.sf.f, newCRLFReaderBuf(ctxReader{ctx, r}, buf[:normBufSize]), buf[normBufSize:])
	d.m.putBuf(bp)
	if err != nil {
		return size, err
	}
	if err := fdatasync(d.sf.f); err != nil {
		return size, err
	}
	return size, ctx.Err()
}

// link hard-links the tmp file as new/<id>.eml into every mailbox. On an
// error the links made so far stay in d.linked (undo removes them).
//
// A mailbox that a tmp file in a mailbox's tmp/ cannot be linked into
// (EXDEV: it is on another filesystem or mount than the first mailbox)
// gets a copy of the message written and fdatasynced in its own tmp/,
// linked from there (see linkCopy). A staged file that cannot be linked
// is left to redoable instead.
func (d *delivery) link() error {
	for _, mb := range d.boxes {
		p := filepath.Join(d.m.mailboxDir(mb), subNew, d.name)
		err := os.Link(d.sf.path, p)
		if errors.Is(err, syscall.EXDEV) && !d.sf.staged {
			err = d.linkCopy(mb, p)
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Stat(filepath.Dir(p)); serr != nil {
					d.m.forget(mb, serr)
				}
			}
			return &linkError{mailbox: mb, err: err}
		}
		d.linked = append(d.linked, p)
	}
	return nil
}

// linkCopy links p (new/<id>.eml in mb) from a copy of the message on
// mb's filesystem: one made for an earlier mailbox of this delivery that
// link(2) can reach from p, or a new one in mb's tmp/, written from the
// tmp file and fdatasynced before the link, as the tmp file was: the same
// durable steps in the same order.
func (d *delivery) linkCopy(mb, p string) error {
	for _, c := range d.copies {
		err := os.Link(c.path, p)
		if !errors.Is(err, syscall.EXDEV) {
			return err
		}
	}
	path := filepath.Join(d.m.mailboxDir(mb), subTmp, store.NewID()+tmpExt)
	f, err := d.m.createTmp(path)
	if err != nil {
		d.m.forget(mb, err)
		return err
	}
	c := &stagedFile{f: f, path: path}
	d.copies = append(d.copies, c)
	if _, err := io.Copy(f, io.NewSectionReader(d.sf.f, 0, d.size)); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	return os.Link(c.path, p)
}

// linkError is a failed link of a delivery into one mailbox.
type linkError struct {
	mailbox string
	err     error
}

func (e *linkError) Error() string { return e.err.Error() }
func (e *linkError) Unwrap() error { return e.err }

// redoable reports whether a failed link can be mended by delivering again
// through another tmp file: a staged file that cannot be linked into a
// mailbox on another mount (EXDEV: a bind mount of the same filesystem),
// from now on delivered to through its own tmp/, or whose name someone
// removed (a tmp cleaner that ignores locks, the staging directory
// deleted).
func (d *delivery) redoable(err error) bool {
	var le *linkError
	if !d.sf.staged || !errors.As(err, &le) {
		return false
	}
	switch {
	case errors.Is(err, syscall.EXDEV):
		d.m.noStage.Store(le.mailbox, struct{}{})
		d.m.log.Warn("maildir: mailbox on another mount than the staging directory; delivering through its tmp/", "mailbox", le.mailbox)
		return true
	case errors.Is(err, fs.ErrNotExist) && !exists(d.sf.path):
		d.m.log.Warn("maildir: staged file removed by someone else; delivering again", "id", d.id, "path", d.sf.path)
		d.m.stage.lost(d.sf)
		return true
	}
	return false
}

// redo delivers again from the size octets written, which the open file
// still holds, and hands the staged file back.
func (d *delivery) redo(ctx context.Context, mailboxes []string, size int64) error {
	d.m.unlink(d.id, d.linked)
	d.linked = nil
	if err := d.m.Deliver(ctx, d.id, mailboxes, io.NewSectionReader(d.sf.f, 0, size)); err != nil {
		return errors.Unwrap(err)
	}
	d.settled = true
	d.m.stage.drop(d.sf)
	d.m.stage.abandon(d.sf)
	return nil
}

// syncNew makes the new links durable: an fsync of each new/ directory,
// shared with concurrent deliveries (group commit, see dirSyncer).
func (d *delivery) syncNew() error {
	for _, mb := range d.boxes {
		if err := d.m.syncers.get(filepath.Join(d.m.mailboxDir(mb), subNew)).Sync(); err != nil {
			return err
		}
	}
	return nil
}

// settle hands the tmp file back once the message is durable in every
// mailbox. Removing the tmp name can wait: a name we fail to remove, or
// that a crash leaves, is harmless (Recover removes it at the next start).
func (d *delivery) settle() {
	d.settled = true
	for _, c := range d.copies {
		d.removeTmp(c)
	}
	if d.sf.staged {
		d.m.stage.retire(d.sf)
		return
	}
	d.removeTmp(d.sf)
}

// removeTmp removes the name of a delivered message's tmp file (not a
// staged one) and closes it.
func (d *delivery) removeTmp(sf *stagedFile) {
	if rerr := os.Remove(sf.path); rerr != nil {
		d.m.log.Warn("maildir: cannot remove tmp file", "id", d.id, "path", sf.path, "err", rerr)
	}
	if cerr := sf.f.Close(); cerr != nil {
		d.m.log.Warn("maildir: close tmp file", "id", d.id, "err", cerr)
	}
}

// undo removes what a delivery that did not settle made: its links (with
// a sync of their directories) and its tmp file.
func (d *delivery) undo() {
	if d.settled {
		return
	}
	d.m.unlink(d.id, d.linked)
	for _, sf := range append(d.copies, d.sf) {
		if rerr := os.Remove(sf.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			d.m.log.Error("maildir: cannot remove tmp file of failed delivery", "id", d.id, "path", sf.path, "err", rerr)
		}
		sf.f.Close()
	}
	if d.sf.staged {
		d.m.stage.abandon(d.sf)
	}
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
// directory's filesystem and mount, else tmp/<id>.tmp in the first mailbox
// (never <id>.eml: see tmpExt).
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
	path := filepath.Join(m.mailboxDir(boxes[0]), subTmp, strings.TrimSuffix(name, msgExt)+tmpExt)
	f, err := m.createTmp(path)
	if err != nil {
		m.forget(boxes[0], err)
		return nil, err
	}
	return &stagedFile{f: f, path: path}, nil
}

// createTmp creates path exclusively (for reading and writing) and takes an exclusive flock on it. A
// tmp cleaner (CleanTmp of this or another process) may open and lock the
// fresh file in the instant between create and flock and then remove it;
// so after locking, createTmp checks that path still names its file and
// starts over if not.
func (m *Maildir) createTmp(path string) (*os.File, error) {
	for range 3 {
		// Readable too: linkCopy copies from it.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
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
