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
// as "deliver <id>: ..."; a full disk wraps store.ErrNoSpace too. Invalid mailbox
// names give store.ErrBadMailbox and nothing is written.
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
		if !store.ValidMailboxName(mb) {
			return fmt.Errorf("mailbox %q: %w", mb, store.ErrBadMailbox)
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
	// (Recover removes it at the next start).
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
		m.Publish(store.Event{Kind: store.EventArrived, Mailbox: mb, IDs: []string{id}, Size: size})
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
