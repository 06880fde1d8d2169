package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"postoffice/internal/store"
)

// folder is a store.Folder: a handle on a folder's shared state.
type folder struct {
	sf     *folderShared
	ch     chan struct{}
	closed bool
}

var _ store.Folder = (*folder)(nil)

// OpenFolder implements store.Folders. INBOX's directories are created if
// needed; another folder must exist (store.ErrNotFound).
func (m *Maildir) OpenFolder(mailbox, name string) (store.Folder, error) {
	f, err := m.checkFolder(mailbox, name)
	if err != nil {
		return nil, err
	}
	if f.inbox() {
		if err := m.ensureMailbox(mailbox); err != nil {
			return nil, fmt.Errorf("open folder %s: %w", name, noSpace(err))
		}
	} else if fi, err := os.Stat(m.folderDir(mailbox, f)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("open folder %s: %w", name, store.ErrNotFound)
	}
	sf := m.acquireFolder(mailbox, f)
	fo := &folder{sf: sf, ch: make(chan struct{}, 1)}
	sf.subMu.Lock()
	sf.subs[fo] = struct{}{}
	sf.subMu.Unlock()
	return fo, nil
}

// checkFolder checks mailbox and a folder name.
func (m *Maildir) checkFolder(mailbox, name string) (folderRef, error) {
	if !store.ValidMailboxName(mailbox) {
		return folderRef{}, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	f, err := parseFolder(name)
	if err != nil {
		return folderRef{}, fmt.Errorf("folder %q: %w", name, err)
	}
	return f, nil
}

var errFolderClosed = errors.New("maildir: folder closed")

// Sync implements store.Folder (see refreshLocked): new UIDs are in the
// uidlist, fsynced and renamed into place, before it returns.
func (fo *folder) Sync() (*store.FolderState, error) {
	if fo.closed {
		return nil, errFolderClosed
	}
	sf := fo.sf
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if err := sf.refreshLocked(nil); err != nil {
		return nil, fmt.Errorf("sync %s: %w", sf.ref.name, noSpace(err))
	}
	return sf.stateLocked(), nil
}

// Open implements store.Folder: the file normalized as POP3 sends it
// (foreign files with LF line ends get CRLF), exactly Size octets; a file
// another program moved is found by its base name.
func (fo *folder) Open(uid uint32) (io.ReadCloser, error) {
	if fo.closed {
		return nil, errFolderClosed
	}
	sf := fo.sf
	sf.mu.Lock()
	msg := sf.byUID(uid)
	var c fmsg
	if msg != nil {
		c = *msg
	}
	sf.mu.Unlock()
	if msg == nil {
		return nil, fmt.Errorf("open uid %d: %w", uid, store.ErrNotFound)
	}
	rc, err := openMessage(sf.dir, c.sub, c.name, c.foreign, c.size)
	if errors.Is(err, store.ErrNotFound) {
		if loc, ok := locateIndex(sf.dir)[c.base]; ok {
			rc, err = openMessage(sf.dir, loc[0], loc[1], c.foreign, c.size)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open uid %d: %w", uid, err)
	}
	return rc, nil
}

// SetFlags implements store.Folder. The new modseqs are appended to the
// modseq log and fdatasynced first, then the files renamed (renameFlags)
// and their directories fsynced: when it returns, both are durable.
func (fo *folder) SetFlags(uids []uint32, op store.FlagOp, flags []string) ([]store.FolderMessage, error) {
	if fo.closed {
		return nil, errFolderClosed
	}
	sf := fo.sf
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.snap = nil // what follows may change the folder
	if err := sf.refreshLocked(nil); err != nil {
		return nil, fmt.Errorf("store flags: %w", err)
	}
	letters, err := sf.lettersFor(flags, op != store.FlagsRemove)
	if err != nil {
		return nil, fmt.Errorf("store flags: %w", err)
	}
	msgs := sf.selectLocked(uids)
	var (
		cs      []change
		rs      []flagRename
		changed []*fmsg
	)
	for _, msg := range msgs {
		var info string
		switch op {
		case store.FlagsAdd:
			info = withLetters(msg.info, letters, "")
		case store.FlagsRemove:
			info = withLetters(msg.info, "", letters)
		default:
			info = withLetters(keepUnmapped(msg.info, sf.keywords), letters, "")
		}
		if info == msg.info && msg.sub == subCur {
			continue
		}
		cs = append(cs, change{uid: msg.uid, info: info})
		rs = append(rs, flagRename{sub: msg.sub, name: msg.name, info: info})
		changed = append(changed, msg)
	}
	if len(cs) > 0 {
		ml, err := sf.log()
		if err != nil {
			return nil, err
		}
		ms, err := ml.append(cs)
		if err != nil {
			return nil, fmt.Errorf("store flags: %w", err)
		}
		rerr := sf.m.renameFlags(sf.dir, rs)
		var ids []string
		for i, msg := range changed {
			if rs[i].newName == "" {
				continue // gone
			}
			msg.sub, msg.name, msg.info, msg.modseq = rs[i].newSub, rs[i].newName, rs[i].info, ms[i]
			ids = append(ids, msg.id)
		}
		sf.publish(store.EventUpdated, ids, 0)
		if rerr != nil {
			return nil, fmt.Errorf("store flags: %w", rerr)
		}
	}
	out := make([]store.FolderMessage, 0, len(msgs))
	for _, msg := range msgs {
		if _, err := os.Lstat(filepath.Join(sf.dir, msg.sub, msg.name)); err == nil {
			out = append(out, sf.folderMessage(msg))
		}
	}
	return out, nil
}

// keepUnmapped returns the letters of info that are no IMAP flag (letters
// without a meaning here, such as Maildir's P, passed; keywords that
// dovecot-keywords does not define), which a FlagsSet keeps.
func keepUnmapped(info string, kws []string) string {
	var b []byte
	for i := 0; i < len(info); i++ {
		c := info[i]
		mapped := false
		for _, s := range systemFlags {
			mapped = mapped || s.letter == c
		}
		if c >= 'a' && c <= 'z' {
			k := int(c - 'a')
			mapped = k < len(kws) && kws[k] != ""
		}
		if !mapped {
			b = append(b, c)
		}
	}
	return string(b)
}

// Expunge implements store.Folder. For INBOX it holds the POP3 maildrop
// lock meanwhile (store.ErrLocked, nothing removed, while a POP3 session
// holds it: a POP3 session's messages never vanish under it). The
// expunges' modseqs are written (fdatasync) first, then the files
// unlinked and their directories fsynced before it returns.
func (fo *folder) Expunge(uids []uint32) ([]uint32, error) {
	if fo.closed {
		return nil, errFolderClosed
	}
	sf := fo.sf
	unlock, err := sf.lockRemovals()
	if err != nil {
		return nil, fmt.Errorf("expunge: %w", err)
	}
	defer unlock()
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.snap = nil // what follows may change the folder
	if err := sf.refreshLocked(nil); err != nil {
		return nil, fmt.Errorf("expunge: %w", err)
	}
	var del []*fmsg
	for _, msg := range sf.selectLocked(uids) {
		if containsByte(msg.info, 'T') {
			del = append(del, msg)
		}
	}
	removed, err := sf.removeLocked(del)
	out := make([]uint32, len(removed))
	for i, msg := range removed {
		out[i] = msg.uid
	}
	return out, err
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// removeLocked removes the files of msgs: modseqs of the expunges
// first, then the unlinks and an fsync of each directory removed from. It
// returns the messages removed (a file already gone is not removed by
// us, and not listed) and publishes their EventDeleted.
func (sf *folderShared) removeLocked(msgs []*fmsg) ([]*fmsg, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	ml, err := sf.log()
	if err != nil {
		return nil, err
	}
	cs := make([]change, len(msgs))
	for i, msg := range msgs {
		cs[i] = change{uid: msg.uid, gone: true}
	}
	if _, err := ml.append(cs); err != nil {
		return nil, err
	}
	var (
		errs    []error
		dirs    = map[string]bool{}
		removed []*fmsg
		ids     []string
		index   map[string][2]string
	)
	for _, msg := range msgs {
		sub := msg.sub
		err := os.Remove(filepath.Join(sf.dir, sub, msg.name))
		if errors.Is(err, fs.ErrNotExist) {
			if index == nil {
				index = locateIndex(sf.dir)
			}
			if loc, ok := index[msg.base]; ok {
				sub = loc[0]
				err = os.Remove(filepath.Join(sf.dir, loc[0], loc[1]))
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if err == nil {
			dirs[sub] = true
			removed = append(removed, msg)
			ids = append(ids, msg.id)
		}
		delete(sf.byBase, msg.base)
	}
	for _, sub := range []string{subNew, subCur} {
		if dirs[sub] {
			if err := sf.m.syncers.get(filepath.Join(sf.dir, sub)).Sync(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	keep := sf.msgs[:0]
	for _, msg := range sf.msgs {
		if _, ok := sf.byBase[msg.base]; ok {
			keep = append(keep, msg)
		}
	}
	sf.msgs = keep
	sf.publish(store.EventDeleted, ids, 0)
	return removed, errors.Join(errs...)
}

// Copy implements store.Folder: each message is hard-linked (copied where
// link(2) cannot reach) into dest's cur/ with its flags (new/ without
// any), under its base name when dest has no message of that name, else
// under a fresh <id>.eml; the new entries are fsynced, then dest's UIDs
// assigned in source order and written (uidlist) before it returns.
func (fo *folder) Copy(uids []uint32, dest string) (*store.CopyResult, error) {
	res, _, err := fo.copy(uids, dest)
	return res, err
}

// copy is Copy; it also returns the source messages copied.
func (fo *folder) copy(uids []uint32, dest string) (*store.CopyResult, []*fmsg, error) {
	if fo.closed {
		return nil, nil, errFolderClosed
	}
	sf := fo.sf
	df, err := sf.m.checkFolder(sf.mailbox, dest)
	if err != nil {
		return nil, nil, err
	}
	if !df.inbox() {
		if fi, err := os.Stat(sf.m.folderDir(sf.mailbox, df)); err != nil || !fi.IsDir() {
			return nil, nil, fmt.Errorf("copy to %s: %w", dest, store.ErrNotFound)
		}
	} else if err := sf.m.ensureMailbox(sf.mailbox); err != nil {
		return nil, nil, err
	}
	// A snapshot of the sources, then the source's lock is let go: two
	// copies in opposite directions never wait for each other.
	sf.mu.Lock()
	if err := sf.refreshLocked(nil); err != nil {
		sf.mu.Unlock()
		return nil, nil, fmt.Errorf("copy: %w", err)
	}
	var src []fmsg
	var srcMsgs []*fmsg
	var flags [][]string
	for _, msg := range sf.selectLocked(uids) {
		src = append(src, *msg)
		srcMsgs = append(srcMsgs, msg)
		flags = append(flags, sf.flagsOf(msg.info))
	}
	sf.mu.Unlock()

	ds := sf.m.acquireFolder(sf.mailbox, df)
	defer sf.m.releaseFolder(ds)
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.snap = nil // what follows may change the folder
	if err := ds.refreshLocked(nil); err != nil {
		return nil, nil, fmt.Errorf("copy to %s: %w", dest, err)
	}
	var (
		bases  []string
		copied []int // indexes into src
		dirs   = map[string]bool{}
		errs   []error
		sizes  []int64
		ids    []string
	)
	for i := range src {
		s := &src[i]
		letters, err := ds.lettersFor(flags[i], true)
		if err != nil {
			errs = append(errs, err)
			break
		}
		letters = withLetters(letters, unmappedSystem(s.info), "")
		base, id, err := ds.placeCopy(sf.dir, s, letters)
		if errors.Is(err, store.ErrNotFound) {
			continue // gone meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			break
		}
		if letters == "" {
			dirs[subNew] = true
		} else {
			dirs[subCur] = true
		}
		bases = append(bases, base)
		copied = append(copied, i)
		sizes = append(sizes, s.size)
		ids = append(ids, id)
	}
	for _, sub := range []string{subNew, subCur} {
		if dirs[sub] {
			if err := sf.m.syncers.get(filepath.Join(ds.dir, sub)).Sync(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil && len(bases) == 0 {
		return nil, nil, fmt.Errorf("copy to %s: %w", dest, noSpace(err))
	}
	if err := ds.refreshLocked(bases); err != nil {
		return nil, nil, fmt.Errorf("copy to %s: %w", dest, noSpace(err))
	}
	res := &store.CopyResult{UIDValidity: ds.list.validity}
	var done []*fmsg
	for k, i := range copied {
		msg := ds.byBase[bases[k]]
		if msg == nil {
			continue
		}
		res.Source = append(res.Source, src[i].uid)
		res.Dest = append(res.Dest, msg.uid)
		done = append(done, srcMsgs[i])
	}
	for k, id := range ids {
		ds.publishArrived(id, sizes[k])
	}
	if err := errors.Join(errs...); err != nil {
		return res, done, fmt.Errorf("copy to %s: %w", dest, noSpace(err))
	}
	return res, done, nil
}

// publishArrived publishes one message's arrival (one message per
// EventArrived, as Deliver does).
func (sf *folderShared) publishArrived(id string, size int64) {
	sf.publish(store.EventArrived, []string{id}, size)
}

// unmappedSystem returns the upper-case letters of info that are no IMAP
// flag (Maildir's P, passed), which a copy keeps.
func unmappedSystem(info string) string {
	var b []byte
	for i := 0; i < len(info); i++ {
		c := info[i]
		if c < 'A' || c > 'Z' {
			continue
		}
		mapped := false
		for _, s := range systemFlags {
			mapped = mapped || s.letter == c
		}
		if !mapped {
			b = append(b, c)
		}
	}
	return string(b)
}

// placeCopy makes the file of s (in srcDir) a message of this folder with
// the flag letters info, and returns its base name and id. sf.mu is held.
func (sf *folderShared) placeCopy(srcDir string, s *fmsg, info string) (base, id string, err error) {
	srcPath := filepath.Join(srcDir, s.sub, s.name)
	if _, err := os.Lstat(srcPath); errors.Is(err, fs.ErrNotExist) {
		loc, ok := locateIndex(srcDir)[s.base]
		if !ok {
			return "", "", store.ErrNotFound
		}
		srcPath = filepath.Join(srcDir, loc[0], loc[1])
	}
	target := func(base string) string {
		if info == "" {
			return filepath.Join(sf.dir, subNew, base)
		}
		return filepath.Join(sf.dir, subCur, base+":2,"+info)
	}
	if _, taken := sf.byBase[s.base]; !taken {
		err := os.Link(srcPath, target(s.base))
		if errors.Is(err, syscall.EXDEV) {
			err = sf.writeCopy(srcPath, target(s.base), s, false)
		}
		if err == nil {
			sf.byBase[s.base] = nil // taken, until the refresh
			return s.base, s.id, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", store.ErrNotFound
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", "", err
		}
	}
	// The name is taken in dest: a fresh id. Our files are in normal form
	// and may be linked; a foreign file gets a normalized copy, since an
	// <id>.eml must hold CRLF text.
	id = store.NewID()
	base = id + msgExt
	if s.foreign {
		err = sf.writeCopy(srcPath, target(base), s, true)
	} else {
		err = os.Link(srcPath, target(base))
		if errors.Is(err, syscall.EXDEV) {
			err = sf.writeCopy(srcPath, target(base), s, false)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", store.ErrNotFound
	}
	if err != nil {
		return "", "", err
	}
	sf.byBase[base] = nil
	return base, id, nil
}

// writeCopy writes a copy of the file at src (normalized to CRLF text if
// normalize) in this folder's tmp/, fdatasyncs it, gives it s's internal
// date and links it as dst. The caller fsyncs dst's directory.
func (sf *folderShared) writeCopy(src, dst string, s *fmsg, normalize bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var r io.Reader = in
	if normalize {
		r = newCRLFReader(in, s.size)
	}
	return sf.m.writeLinked(filepath.Join(sf.dir, subTmp), r, s.received, dst)
}

// writeLinked streams r into a new locked tmp file in tmpDir, fsyncs it
// (with date as its mtime when not zero) and links it as dst; the tmp name
// is removed after. It returns the octets written.
func (m *Maildir) writeLinked(tmpDir string, r io.Reader, date time.Time, dst string) error {
	_, err := m.writeLinkedN(tmpDir, r, date, dst)
	return err
}

func (m *Maildir) writeLinkedN(tmpDir string, r io.Reader, date time.Time, dst string) (int64, error) {
	path := filepath.Join(tmpDir, store.NewID()+tmpExt)
	f, err := m.createTmp(path)
	if err != nil {
		return 0, noSpace(err)
	}
	defer func() {
		os.Remove(path)
		f.Close()
	}()
	bp := m.getBuf()
	n, err := copyFilled(f, r, (*bp)[normBufSize:])
	m.putBuf(bp)
	if err != nil {
		return n, noSpace(err)
	}
	if !date.IsZero() {
		if err := os.Chtimes(path, date, date); err != nil {
			return n, err
		}
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	return n, os.Link(path, dst)
}

// Move implements store.Folder: Copy (a message keeps its base name when
// it is free in dest), then the sources removed as Expunge removes them
// (for INBOX under the POP3 maildrop lock: store.ErrLocked, nothing done,
// while a POP3 session holds it). All of it is durable when it returns.
func (fo *folder) Move(uids []uint32, dest string) (*store.CopyResult, error) {
	if fo.closed {
		return nil, errFolderClosed
	}
	sf := fo.sf
	unlock, err := sf.lockRemovals()
	if err != nil {
		return nil, fmt.Errorf("move: %w", err)
	}
	defer unlock()
	res, done, err := fo.copy(uids, dest)
	if res == nil {
		return nil, err
	}
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.snap = nil // what follows may change the folder
	var live []*fmsg
	for _, msg := range done {
		if sf.byBase[msg.base] == msg {
			live = append(live, msg)
		}
	}
	if _, rerr := sf.removeLocked(live); rerr != nil {
		return res, fmt.Errorf("move: %w", errors.Join(err, rerr))
	}
	return res, err
}

// Append implements store.Folder: the message, in normal form (CRLF line
// ends, ending in CRLF, so that Size is the file size), is written to the
// folder's tmp/ under an flock (tmp cleaners skip it), its mtime set to
// date (the internal date; now when zero), fsynced, linked into cur/
// with its flags (new/ without any), the directory fsynced, and its UID
// written into the uidlist before it returns.
func (fo *folder) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	if fo.closed {
		return 0, errFolderClosed
	}
	sf := fo.sf
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.snap = nil // what follows may change the folder
	if err := sf.refreshLocked(nil); err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	info, err := sf.lettersFor(flags, true)
	if err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	id := store.NewID()
	base := id + msgExt
	sub, dst := subNew, filepath.Join(sf.dir, subNew, base)
	if info != "" {
		sub, dst = subCur, filepath.Join(sf.dir, subCur, base+":2,"+info)
	}
	if err := mkdirExisting(filepath.Join(sf.dir, subTmp)); err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	bp := sf.m.getBuf()
	norm := newCRLFReaderBuf(r, (*bp)[:normBufSize])
	size, err := sf.m.writeLinkedN(filepath.Join(sf.dir, subTmp), norm, date, dst)
	sf.m.putBuf(bp)
	if err != nil {
		os.Remove(dst)
		return 0, fmt.Errorf("append: %w", noSpace(err))
	}
	if err := sf.m.syncers.get(filepath.Join(sf.dir, sub)).Sync(); err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	if err := sf.refreshLocked([]string{base}); err != nil {
		return 0, fmt.Errorf("append: %w", noSpace(err))
	}
	msg := sf.byBase[base]
	if msg == nil {
		return 0, fmt.Errorf("append: message %s: %w", id, store.ErrNotFound)
	}
	sf.publishArrived(id, size)
	return msg.uid, nil
}

// Changed implements store.Folder.
func (fo *folder) Changed() <-chan struct{} { return fo.ch }

// lockRemovals takes, for INBOX, the maildrop lock a removal needs (see
// lockMailboxBrief): store.ErrLocked while a POP3 session holds it. Other
// folders need none.
func (sf *folderShared) lockRemovals() (unlock func(), err error) {
	if !sf.ref.inbox() {
		return func() {}, nil
	}
	lf, err := sf.m.lockMailboxBrief(sf.mailbox)
	if err != nil {
		return nil, err
	}
	return func() { lf.Close() }, nil
}

// Close implements store.Folder.
func (fo *folder) Close() error {
	if fo.closed {
		return nil
	}
	fo.closed = true
	fo.sf.subMu.Lock()
	delete(fo.sf.subs, fo)
	fo.sf.subMu.Unlock()
	fo.sf.m.releaseFolder(fo.sf)
	return nil
}
