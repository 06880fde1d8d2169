package maildir

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"slices"
	"strings"
	"sync"
	"time"
)

// lockName is the lock file of a mailbox, in root/<mailbox>/ beside tmp,
// new and cur, where Maildir readers do not look. It is never removed:
// removing a lock file while another process waits on it breaks the lock.
const lockName = ".postoffice.lock"

// message is one entry of a maildrop snapshot.
type message struct {
	store.MessageInfo
	sub     string // subdirectory: "new" or "cur"
	name    string // file name
	base    string // name without its ":2,..." info suffix
	foreign bool   // not written by Deliver: normalize on Open
	order   int64  // sort key: id time (ours) or mtime (foreign), in ns
	mtime   int64  // the file's modification time, in ns
}

// maildrop is the store.Maildrop of a Maildir mailbox.
type maildrop struct {
	m     *Maildir
	dir   string // root/<mailbox>
	lock  *os.File
	msgs  []message
	infos []store.MessageInfo

	mu      sync.Mutex
	closed  bool
	removed []bool
}

// OpenMaildrop implements store.Store. It creates the mailbox directories if
// needed, takes an exclusive flock on root/<mailbox>/.postoffice.lock,
// waiting up to lockBriefWait for a brief holder (RFC 1939 §8: the server
// should take an exclusive-access lock on the maildrop; a second session
// gets store.ErrLocked, whether in this process or another) and snapshots
// new/ and cur/: from the persistent index when UseIndex gave one (the
// same snapshot, without a stat per file), else from the directories.
//
// The snapshot lists regular files only, skipping names starting with '.'.
// Order, oldest first: by a time key, then file name, then directory. The
// time key of a file named by us (<id>.eml, optionally with a ":2,<flags>"
// suffix) is the time in its id, so our files sort exactly by id; that of a
// foreign file is its modification time. A message seen twice (a reader moved
// it from new/ to cur/ between the two directory reads) is listed once.
//
// Sizes: our files hold CRLF text ending in CRLF, so Size is the file size.
// A foreign file is read once to compute the size of its normal form (see
// normalize.go). UIDs: ours is the id; a foreign file's is its name without
// the ":2," suffix when that is 1-70 characters of 0x21-0x7E (RFC 1939 §7),
// else the first 40 hex digits of the SHA-256 of that name; both are stable
// across sessions.
func (m *Maildir) OpenMaildrop(mailbox string) (_ store.Maildrop, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("open maildrop %q: %w", mailbox, noSpace(err))
		}
	}()
	if !store.ValidMailboxName(mailbox) {
		return nil, store.ErrBadMailbox
	}
	if m.index != nil {
		// Bring the index up to date before taking the lock, so that
		// the lock is held only for reading the rows (and for what
		// changed in between).
		if err := m.index.Warm(mailbox); err != nil {
			m.log.Warn("POP3: the index cannot be brought up to date", "mailbox", mailbox, "err", err)
		}
	}
	// Wait a moment for a brief holder (retention, a web delete, an IMAP
	// expunge) rather than refuse a login; another POP3 session holds
	// it for its whole life and gets store.ErrLocked after the wait.
	lf, err := m.lockMailboxBrief(mailbox)
	if err != nil {
		return nil, err
	}
	dir := m.mailboxDir(mailbox)
	var msgs []message
	if m.index != nil {
		msgs, err = m.indexedSnapshot(mailbox)
		if err != nil {
			m.log.Warn("POP3: the index cannot list the maildrop; listing the Maildir", "mailbox", mailbox, "err", err)
		}
	}
	if m.index == nil || err != nil {
		msgs, err = snapshot(dir)
	}
	if err != nil {
		lf.Close()
		return nil, err
	}
	md := &maildrop{m: m, dir: dir, lock: lf, msgs: msgs,
		infos: make([]store.MessageInfo, len(msgs)), removed: make([]bool, len(msgs))}
	for i := range msgs {
		md.infos[i] = msgs[i].MessageInfo
	}
	return md, nil
}

// lockMailbox takes the maildrop lock of mailbox without waiting: it
// returns store.ErrLocked while a POP3 session (of any process) holds it.
// The caller closes the file to release it.
func (m *Maildir) lockMailbox(mailbox string) (*os.File, error) {
	if err := m.ensureMailbox(mailbox); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(m.mailboxDir(mailbox), lockName), os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		m.forget(mailbox, err)
		return nil, err
	}
	if err := tryLock(lf); err != nil {
		lf.Close()
		return nil, err
	}
	return lf, nil
}

// lockBriefWait is how long lockMailboxBrief waits for a lock another
// short holder (an IMAP expunge or move, retention) has.
const lockBriefWait = time.Second

// lockMailboxBrief is lockMailbox for an operation that holds the lock for
// a moment (IMAP EXPUNGE and MOVE out of INBOX): it waits up to
// lockBriefWait for another such holder to let go, so that two IMAP
// sessions never refuse each other; a POP3 session holds the lock for
// its whole life, and then store.ErrLocked comes after the wait.
func (m *Maildir) lockMailboxBrief(mailbox string) (*os.File, error) {
	deadline := time.Now().Add(lockBriefWait)
	for {
		lf, err := m.lockMailbox(mailbox)
		if !errors.Is(err, store.ErrLocked) || time.Now().After(deadline) {
			return lf, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// MaildropIndex is what OpenMaildrop needs of the persistent index
// (*index.Index).
type MaildropIndex interface {
	// Listing returns every message of a folder, reconciled with the
	// directories when their modification times changed.
	Listing(box string) ([]index.Listed, error)
	// Warm reconciles a folder's index without listing it.
	Warm(box string) error
	// Known returns the rows the index has of a folder, as they are.
	Known(box string) ([]index.Listed, error)
}

// UseIndex makes OpenMaildrop take its snapshot from the persistent index
// instead of stat'ing every file. It is called before the store is used.
func (m *Maildir) UseIndex(x MaildropIndex) { m.index = x }

// indexedSnapshot is snapshot from the index: the same messages, ids,
// sizes and order, without a system call per message.
func (m *Maildir) indexedSnapshot(mailbox string) ([]message, error) {
	ls, err := m.index.Listing(mailbox)
	if err != nil {
		return nil, err
	}
	msgs := make([]message, 0, len(ls))
	for _, l := range ls {
		sub, name, ok := splitLoc(l.Loc)
		if !ok {
			continue
		}
		_, ours := ourFileID(name)
		msgs = append(msgs, message{MessageInfo: store.MessageInfo{ID: l.ID, Size: l.Size},
			sub: sub, name: name, base: baseName(name), foreign: !ours, order: l.Order})
	}
	return sortSnapshot(msgs), nil
}

// snapshot lists the messages in dir/new and dir/cur (see OpenMaildrop).
func snapshot(dir string) ([]message, error) {
	var msgs []message
	var scanBuf []byte // shared by the scans of foreign files
	for _, sub := range messageSubdirs {
		err := messageFiles(dir, sub, func(e fs.DirEntry) error {
			msg, ok, err := scanMessage(dir, sub, e.Name(), e.Info, &scanBuf)
			if ok {
				msgs = append(msgs, msg)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return sortSnapshot(msgs), nil
}

// sortSnapshot sorts a snapshot oldest first and keeps the first message
// of each id (see OpenMaildrop).
func sortSnapshot(msgs []message) []message {
	slices.SortFunc(msgs, func(a, b message) int {
		return cmp.Or(cmp.Compare(a.order, b.order),
			strings.Compare(a.name, b.name), strings.Compare(a.sub, b.sub))
	})
	seen := make(map[string]struct{}, len(msgs))
	out := msgs[:0]
	for _, msg := range msgs {
		if _, dup := seen[msg.ID]; dup {
			continue
		}
		seen[msg.ID] = struct{}{}
		out = append(out, msg)
	}
	return out
}

// scanMessage describes the message file dir/sub/name, whose lstat(2) info
// gives (a directory entry's Info: no path to clean). ok is false when the
// file vanished meanwhile. *buf is the scan buffer, allocated on first
// need.
func scanMessage(dir, sub, name string, info func() (fs.FileInfo, error), buf *[]byte) (msg message, ok bool, err error) {
	msg = message{sub: sub, name: name, base: baseName(name)}
	fi, err := info()
	if errors.Is(err, fs.ErrNotExist) {
		return msg, false, nil
	}
	if err != nil {
		return msg, false, err
	}
	msg.mtime = fi.ModTime().UnixNano()
	if id, ours := ourFileID(name); ours {
		msg.ID, msg.Size, msg.order = id, fi.Size(), store.IDTime(id)
		return msg, true, nil
	}
	msg.foreign = true
	msg.ID = foreignUID(msg.base)
	msg.order = fi.ModTime().UnixNano()
	f, err := os.Open(filepath.Join(dir, sub, name))
	if errors.Is(err, fs.ErrNotExist) {
		return msg, false, nil
	}
	if err != nil {
		return msg, false, err
	}
	defer f.Close()
	if *buf == nil {
		*buf = make([]byte, normBufSize)
	}
	msg.Size, err = normalizedSize(f, *buf)
	if err != nil {
		return msg, false, err
	}
	return msg, true, nil
}

// Messages implements store.Maildrop.
func (md *maildrop) Messages() []store.MessageInfo { return md.infos }

// messageFile is an open message: the normalized, size-exact content of
// the file it closes.
type messageFile struct {
	io.Reader
	f *rawFile
}

func (mf *messageFile) Close() error { return mf.f.Close() }

// Open implements store.Maildrop. A message whose file has gone (removed by
// another tool, or committed) gives store.ErrNotFound; one that a mail reader moved
// from new/ to cur/ or renamed with other flags is found by its base name.
func (md *maildrop) Open(i int) (io.ReadCloser, error) {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return nil, fmt.Errorf("open message %d: maildrop closed", i)
	}
	if i < 0 || i >= len(md.msgs) || md.removed[i] {
		return nil, fmt.Errorf("open message %d: %w", i, store.ErrNotFound)
	}
	msg := &md.msgs[i]
	rc, err := openMessage(md.dir, msg.sub, msg.name, msg.foreign, msg.Size)
	if errors.Is(err, store.ErrNotFound) {
		if sub, name, ok := md.locate(msg.base, nil); ok {
			rc, err = openMessage(md.dir, sub, name, msg.foreign, msg.Size)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("open message %s: %w", msg.ID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open message %s: %w", msg.ID, err)
	}
	return rc, nil
}

// locate finds, by its base name, a message file that is no longer where
// the snapshot saw it: a mail reader may have moved it from new/ to cur/ or
// changed its ":2," flags. index, when non-nil, caches the directory listing
// for several lookups.
func (md *maildrop) locate(base string, index *map[string][2]string) (sub, name string, ok bool) {
	var idx map[string][2]string
	if index != nil && *index != nil {
		idx = *index
	} else {
		idx = make(map[string][2]string)
		for _, s := range messageSubdirs {
			// A directory that cannot be read has nothing to find.
			_ = messageFiles(md.dir, s, func(e fs.DirEntry) error {
				idx[baseName(e.Name())] = [2]string{s, e.Name()}
				return nil
			})
		}
		if index != nil {
			*index = idx
		}
	}
	loc, ok := idx[base]
	return loc[0], loc[1], ok
}

// Commit implements store.Maildrop: it unlinks the files of the given messages
// (RFC 1939 §6: only in the UPDATE state, i.e. at QUIT), finding a moved file
// by its base name, then fsyncs every directory it removed from, and returns
// only then. A file already gone is not an error. Indexes out of range fail
// the whole call before anything is removed.
func (md *maildrop) Commit(indexes []int) error {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return errors.New("commit: maildrop closed")
	}
	for _, i := range indexes {
		if i < 0 || i >= len(md.msgs) {
			return fmt.Errorf("commit: message index %d: %w", i, store.ErrNotFound)
		}
	}
	var (
		errs  []error
		dirs  = make(map[string]bool)
		index map[string][2]string
		gone  []string // ids removed by this call, for the event
	)
	for _, i := range indexes {
		if md.removed[i] {
			continue
		}
		msg := &md.msgs[i]
		sub := msg.sub
		err := os.Remove(filepath.Join(md.dir, sub, msg.name))
		if errors.Is(err, fs.ErrNotExist) {
			var name string
			var ok bool
			if sub, name, ok = md.locate(msg.base, &index); ok {
				err = os.Remove(filepath.Join(md.dir, sub, name))
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if err == nil {
			dirs[sub] = true
			gone = append(gone, msg.ID)
		}
		md.removed[i] = true
	}
	// Make the removals durable, even after a partial failure.
	for _, sub := range []string{subNew, subCur} {
		if dirs[sub] {
			if err := md.m.syncers.get(filepath.Join(md.dir, sub)).Sync(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	md.m.Publish(store.Event{Kind: store.EventDeleted, Mailbox: filepath.Base(md.dir), IDs: gone})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("commit %s: %w", filepath.Base(md.dir), err)
	}
	return nil
}

// MarkSeen implements store.Maildrop: it gives message i the Maildir
// flag S through renameFlags (the one rename IMAP's STORE and the web
// inbox use), moving it from new/ to cur/ if needed. Its id, size and
// place in the listing do not change; Open and Commit find it under its
// new name. The rename is durable when MarkSeen returns. A message gone
// is store.ErrNotFound; one already seen costs nothing.
func (md *maildrop) MarkSeen(i int) error {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return fmt.Errorf("mark message %d: maildrop closed", i)
	}
	if i < 0 || i >= len(md.msgs) || md.removed[i] {
		return fmt.Errorf("mark message %d: %w", i, store.ErrNotFound)
	}
	msg := &md.msgs[i]
	// The flags are the file's as they are now, not as the snapshot saw
	// them: IMAP or the web inbox may have changed them during the
	// session (the file then has another name), and they are kept.
	var rs []flagRename
	for try := 0; try < 3; try++ {
		if sub, name, ok := md.locate(msg.base, nil); ok {
			msg.sub, msg.name = sub, name
		}
		rs = []flagRename{{sub: msg.sub, name: msg.name, info: withLetters(fileInfo(msg.name), "S", "")}}
		if err := md.m.renameFlags(md.dir, rs); err != nil {
			return fmt.Errorf("mark %s: %w", msg.ID, err)
		}
		if rs[0].newName != "" {
			break
		}
	}
	if rs[0].newName == "" {
		return fmt.Errorf("mark %s: %w", msg.ID, store.ErrNotFound)
	}
	if rs[0].newSub != msg.sub || rs[0].newName != msg.name {
		msg.sub, msg.name = rs[0].newSub, rs[0].newName
		md.m.Publish(store.Event{Kind: store.EventUpdated, Mailbox: filepath.Base(md.dir), IDs: []string{msg.ID}})
	}
	return nil
}

// Close implements store.Maildrop: it releases the lock. It is idempotent.
func (md *maildrop) Close() error {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return nil
	}
	md.closed = true
	return md.lock.Close()
}
