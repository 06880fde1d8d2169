package maildir

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
)

// The folders' shared state. Every open Folder of one folder directory in
// this process shares one folderShared (refcounted in Maildir.folders): one
// listing, one scan when something changed, one watcher. Its listing is
// what the directories and the uidlist said at the last refresh, and a
// refresh reads no directory when nothing changed: the mtimes of new/ and
// cur/ and the stamps of dovecot-uidlist and dovecot-keywords are those of
// the last scan, none of them was younger than scanSlack when that scan
// began (a change within the same timestamp tick would not show; Dovecot
// rescans such directories too), and no change was made in this process (the change counter,
// bumped by every event published for the folder).

// watchInterval is how often the watcher stats a folder's directories for
// changes by other programs (Changed).
var watchInterval = time.Second

// fmsg is one message of a folder's listing.
type fmsg struct {
	uid      uint32
	id       string
	base     string
	sub      string // "new" or "cur"
	name     string // file name
	info     string // flag letters
	size     int64
	received time.Time
	order    int64
	modseq   uint64
	foreign  bool
}

// stamp is what a stat says of a file or directory, to tell a change.
type stamp struct {
	mtime int64
	size  int64
	ino   uint64
	ok    bool
}

func stampOf(path string) stamp {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return stamp{}
	}
	return stamp{mtime: st.Mtim.Nano(), size: st.Size, ino: st.Ino, ok: true}
}

// folderShared is the state of one folder directory shared by the open
// Folders on it.
type folderShared struct {
	// scanned is when the last full refresh began (see racy); under mu.
	scanned time.Time

	// snap is the state stateLocked last made, shared by every Sync until
	// something changes (nil then); under mu.
	snap *store.FolderState

	m       *Maildir
	mailbox string
	ref     folderRef
	dir     string
	refs    int // guarded by m.fmu
	// linger, while refs is 0, forgets the state when it fires; guarded
	// by m.fmu.
	linger *time.Timer

	changes atomic.Uint64 // in-process changes (events) seen
	subMu   sync.Mutex
	subs    map[*folder]struct{}
	stop    chan struct{}
	cancel  func()

	mu          sync.Mutex
	loaded      bool
	seenChanges uint64
	stamps      [4]stamp // new/, cur/, uidlist, keywords at the last scan
	list        *uidlist // the uidlist as last read or written
	byBase      map[string]*fmsg
	msgs        []*fmsg // by uid
	keywords    []string
	modlog      *modseqLog
	validity    uint32 // last UIDVALIDITY known (0: none)
}

// acquireFolder returns the shared state of folder f of mailbox, one more
// reference taken.
func (m *Maildir) acquireFolder(mailbox string, f folderRef) *folderShared {
	dir := m.folderDir(mailbox, f)
	m.fmu.Lock()
	defer m.fmu.Unlock()
	if m.folders == nil {
		m.folders = make(map[string]*folderShared)
	}
	if sf := m.folders[dir]; sf != nil {
		sf.refs++
		if sf.linger != nil {
			sf.linger.Stop()
			sf.linger = nil
		}
		return sf
	}
	sf := &folderShared{m: m, mailbox: mailbox, ref: f, dir: dir, refs: 1,
		subs: map[*folder]struct{}{}, stop: make(chan struct{}), byBase: map[string]*fmsg{}}
	sf.cancel = m.Subscribe(func(ev store.Event) {
		if ev.Mailbox == mailbox && eventFolder(ev.Folder) == f.name {
			sf.changes.Add(1)
			sf.notify()
		}
	})
	// The first stat is taken now, not when the watcher's goroutine first
	// runs: a change made after the open and before that would be in its
	// first stat, and never be told.
	go sf.watch(sf.statAll(), time.Now())
	m.folders[dir] = sf
	return sf
}

// eventFolder is the canonical folder name of an Event's Folder.
func eventFolder(name string) string {
	if name == "" {
		return store.Inbox
	}
	if f, err := parseFolder(name); err == nil {
		return f.name
	}
	return name
}

// folderLinger is how long a folder's shared state outlives its last
// Folder: a client that SELECTs folder after folder, or logs in again,
// finds the listing made (for 100,000 messages, a scan of most of a
// second) instead of scanning again.
var folderLinger = time.Minute

// releaseFolder drops a reference. After the last one the state lingers
// for folderLinger, then the watcher stops and the state is forgotten,
// unless a Folder was opened on it meanwhile.
func (m *Maildir) releaseFolder(sf *folderShared) {
	m.fmu.Lock()
	defer m.fmu.Unlock()
	sf.refs--
	if sf.refs > 0 {
		return
	}
	if m.folders[sf.dir] != sf {
		sf.teardown()
		return
	}
	sf.linger = time.AfterFunc(folderLinger, func() {
		m.fmu.Lock()
		defer m.fmu.Unlock()
		if sf.refs == 0 && sf.linger != nil {
			sf.linger = nil
			if m.folders[sf.dir] == sf {
				delete(m.folders, sf.dir)
			}
			sf.teardown()
		}
	})
}

// teardown stops the watcher and closes the modseq log of a state no
// Folder uses any more.
func (sf *folderShared) teardown() {
	sf.cancel()
	close(sf.stop)
	sf.mu.Lock()
	if sf.modlog != nil {
		sf.modlog.close()
		sf.modlog = nil
	}
	sf.mu.Unlock()
}

// closeFolders forgets the lingering folder states (Close).
func (m *Maildir) closeFolders() {
	m.fmu.Lock()
	defer m.fmu.Unlock()
	for dir, sf := range m.folders {
		if sf.refs == 0 && sf.linger != nil {
			sf.linger.Stop()
			sf.linger = nil
			delete(m.folders, dir)
			sf.teardown()
		}
	}
}

// detachFolders forgets the shared states of the directories under the
// mailbox whose name is rel or starts with rel+".", after DeleteFolder or
// RenameFolder moved them: Folders open on them keep their state (and
// find their directory gone); new opens start afresh.
func (m *Maildir) detachFolders(mailbox, rel string) {
	base := m.mailboxDir(mailbox)
	m.fmu.Lock()
	defer m.fmu.Unlock()
	for dir, sf := range m.folders {
		r, err := filepath.Rel(base, dir)
		if err == nil && (r == rel || strings.HasPrefix(r, rel+".")) {
			delete(m.folders, dir)
			if sf.refs == 0 && sf.linger != nil {
				sf.linger.Stop()
				sf.linger = nil
				sf.teardown()
			}
		}
	}
}

// notify tells every open Folder, without blocking.
func (sf *folderShared) notify() {
	sf.subMu.Lock()
	defer sf.subMu.Unlock()
	for f := range sf.subs {
		select {
		case f.ch <- struct{}{}:
		default:
		}
	}
}

// watch stats the directories once per watchInterval and notifies when
// they changed (another program's delivery, expunge or flag change) since
// last, the stat taken at taken. A stat taken within scanSlack of a
// directory's change is not trusted (racy): a second change in the same
// timestamp tick leaves the same mtime, so the next tick notifies anyway.
func (sf *folderShared) watch(last [4]stamp, taken time.Time) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-sf.stop:
			return
		case <-t.C:
			now := time.Now()
			st := sf.statAll()
			if st != last || racy(last, taken) {
				sf.notify()
			}
			last, taken = st, now
		}
	}
}

func (sf *folderShared) statAll() [4]stamp {
	return [4]stamp{
		stampOf(filepath.Join(sf.dir, subNew)),
		stampOf(filepath.Join(sf.dir, subCur)),
		stampOf(filepath.Join(sf.dir, uidlistName)),
		stampOf(filepath.Join(sf.dir, keywordsName)),
	}
}

// found is a message file seen by a scan.
type found struct{ sub, name string }

// refreshLocked brings the listing up to date (see the comment at the
// top); prefer lists base names that get their UIDs first, in that order,
// if they are new (COPY, MOVE, APPEND). New UIDs are durable when it
// returns. sf.mu is held.
func (sf *folderShared) refreshLocked(prefer []string) error {
	ch := sf.changes.Load()
	st := sf.statAll()
	now := time.Now()
	if !st[0].ok || !st[1].ok {
		if _, err := os.Stat(sf.dir); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("folder %s: %w", sf.ref.name, store.ErrNotFound)
		}
	}
	if sf.loaded && len(prefer) == 0 && ch == sf.seenChanges && st == sf.stamps && !racy(st, sf.scanned) {
		return nil
	}
	sf.scanned = now
	sf.snap = nil
	sf.seenChanges = ch
	if !sf.loaded || st[3] != sf.stamps[3] {
		kw, err := readKeywords(filepath.Join(sf.dir, keywordsName))
		if err != nil {
			return err
		}
		sf.keywords = kw
	}
	files, err := scanFolder(sf.dir)
	if err != nil {
		return err
	}
	list, corrupt, err := sf.readList()
	if err != nil {
		return err
	}
	if list == nil || corrupt != nil || listNeedsWrite(list, files) {
		lk, err := takeDotlock(filepath.Join(sf.dir, uidlistName))
		if err != nil {
			return err
		}
		// Under the lock: what the directories and the list say now.
		if files, err = scanFolder(sf.dir); err == nil {
			list, corrupt, err = sf.readList()
		}
		if err != nil {
			lk.release()
			return err
		}
		if list == nil || corrupt != nil || listNeedsWrite(list, files) {
			if list, err = sf.rewriteList(lk, list, corrupt, files, prefer); err != nil {
				return err
			}
		} else {
			lk.release()
		}
	}
	sf.stamps = st
	return sf.adopt(list, files)
}

// scanSlack: a directory's mtime older than this before a scan began
// proves that the scan saw every change up to then, since a later change
// gets a later mtime (the kernel stamps with a clock of at most a
// scheduler tick's granularity, 10 ms at HZ=100).
const scanSlack = 50 * time.Millisecond

// racy reports whether a directory of st changed so shortly before the
// scan that began at scanned that a change after the scan may have kept
// the same mtime: then the next refresh scans again.
func racy(st [4]stamp, scanned time.Time) bool {
	for _, s := range st[:2] {
		if s.ok && scanned.UnixNano()-s.mtime < int64(scanSlack) {
			return true
		}
	}
	return false
}

// scanFolder lists the message files of dir/new and dir/cur by base name
// (new/ first: a file another program moves to cur/ meanwhile is then seen
// in one of the two).
func scanFolder(dir string) (map[string]found, error) {
	out := make(map[string]found)
	for _, sub := range messageSubdirs {
		err := messageFiles(dir, sub, func(e fs.DirEntry) error {
			out[baseName(e.Name())] = found{sub, e.Name()}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readList reads the uidlist: nil when there is none, and the parse error
// of a corrupt one.
func (sf *folderShared) readList() (*uidlist, error, error) {
	data, err := os.ReadFile(filepath.Join(sf.dir, uidlistName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	l, perr := parseUIDList(data)
	if perr != nil {
		sf.validity = max(sf.validity, validityFromHeader(data))
		return nil, perr, nil
	}
	return l, nil, nil
}

// listNeedsWrite reports whether files has a message the list lacks, or
// the list one that is gone.
func listNeedsWrite(l *uidlist, files map[string]found) bool {
	listed := 0
	for _, r := range l.recs {
		if _, ok := files[r.base]; !ok {
			return true
		}
		listed++
	}
	return listed != len(files)
}

// rewriteList writes the uidlist (holding its lock lk, released on return):
// the records of the files that are still there, then new UIDs for the
// files it lacks, in prefer's order first, then by arrival (our id's time,
// else the mtime, then the name: the order of a POP3 snapshot). A missing
// or corrupt list (moved aside as dovecot-uidlist.corrupt-<unix time>)
// starts a new UIDVALIDITY: the time, and greater than any known before,
// so that no UID is ever reused under one UIDVALIDITY.
func (sf *folderShared) rewriteList(lk *dotlock, l *uidlist, corrupt error, files map[string]found, prefer []string) (*uidlist, error) {
	if corrupt != nil {
		aside := filepath.Join(sf.dir, uidlistName+".corrupt-"+strconv.FormatInt(time.Now().Unix(), 10))
		sf.m.log.Warn("maildir: corrupt dovecot-uidlist moved aside; new UIDVALIDITY", "folder", sf.dir, "to", aside, "err", corrupt)
		if err := os.Rename(filepath.Join(sf.dir, uidlistName), aside); err != nil {
			lk.release()
			return nil, err
		}
	}
	if l == nil {
		known := sf.validity
		if sf.list != nil {
			known = max(known, sf.list.validity)
		}
		if ml, err := sf.log(); err == nil {
			known = max(known, ml.validity)
		}
		v := uint32(time.Now().Unix())
		if known != 0 && v <= known {
			v = known + 1
		}
		l = newUIDList(v)
	}
	nl := &uidlist{validity: l.validity, next: l.next, guid: l.guid, extra: l.extra}
	listed := make(map[string]bool, len(l.recs))
	for _, r := range l.recs {
		if _, ok := files[r.base]; ok {
			nl.recs = append(nl.recs, r)
			listed[r.base] = true
		}
	}
	var fresh []string
	for _, b := range prefer {
		if _, ok := files[b]; ok && !listed[b] {
			fresh = append(fresh, b)
			listed[b] = true
		}
	}
	type arrival struct {
		base  string
		order int64
	}
	var rest []arrival
	for b, f := range files {
		if listed[b] {
			continue
		}
		o := int64(0)
		if id, ours := ourFileID(f.name); ours {
			o = store.IDTime(id)
		} else if fi, err := os.Lstat(filepath.Join(sf.dir, f.sub, f.name)); err == nil {
			o = fi.ModTime().UnixNano()
		}
		rest = append(rest, arrival{b, o})
	}
	slices.SortFunc(rest, func(a, b arrival) int { return cmp.Or(cmp.Compare(a.order, b.order), strings.Compare(a.base, b.base)) })
	for _, a := range rest {
		fresh = append(fresh, a.base)
	}
	for _, b := range fresh {
		nl.recs = append(nl.recs, uidRec{uid: nl.next, base: b})
		nl.next++
	}
	if err := lk.replace(sf.m, nl.bytes()); err != nil {
		return nil, fmt.Errorf("write %s: %w", filepath.Join(sf.dir, uidlistName), err)
	}
	return nl, nil
}

// log returns the modseq log, opening it on first use.
func (sf *folderShared) log() (*modseqLog, error) {
	if sf.modlog == nil {
		l, err := openModseqLog(sf.m, sf.dir)
		if err != nil {
			return nil, err
		}
		sf.modlog = l
	}
	return sf.modlog, nil
}

// adopt makes list and files the listing: messages keep what is known of
// them (size, date) while their UIDVALIDITY holds; new ones are described
// (a stat; a foreign file without ",W=" is read once for its wire size);
// modseqs come from the modseq log, and a message whose flags differ from
// its last record (new, or changed by another program) gets a new one.
func (sf *folderShared) adopt(list *uidlist, files map[string]found) error {
	reset := sf.list == nil || sf.list.validity != list.validity
	rewritten := sf.list == nil || !slices.Equal(list.recs, sf.list.recs) || reset
	sf.list, sf.validity = list, max(sf.validity, list.validity)
	old := sf.byBase
	if reset {
		old = map[string]*fmsg{}
	}
	byBase := make(map[string]*fmsg, len(list.recs))
	msgs := make([]*fmsg, 0, len(list.recs))
	var buf []byte
	known := sf.knownFiles(len(list.recs) - len(old))
	for _, r := range list.recs {
		f, ok := files[r.base]
		if !ok {
			continue // gone since the list was read
		}
		msg := old[r.base]
		if msg == nil || msg.uid != r.uid {
			if l, ok := known[f.name]; ok && l.MTime != 0 {
				msg = fromIndex(f, l)
			} else {
				var err error
				msg, ok, err = describe(sf.dir, f, &buf)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
			}
			msg.uid = r.uid
		}
		msg.sub, msg.name, msg.info = f.sub, f.name, fileInfo(f.name)
		byBase[r.base] = msg
		msgs = append(msgs, msg)
	}
	ml, err := sf.log()
	if err != nil {
		return err
	}
	if err := ml.locked(func() error { return nil }); err != nil { // catch up
		return err
	}
	var cs []change
	var pend []*fmsg
	live := make(map[uint32]bool, len(msgs))
	for _, msg := range msgs {
		live[msg.uid] = true
		r, ok := ml.recs[msg.uid]
		if ok && !r.gone && r.info == msg.info && ml.validity == list.validity {
			msg.modseq = r.modseq
			continue
		}
		cs = append(cs, change{uid: msg.uid, info: msg.info})
		pend = append(pend, msg)
	}
	if ml.validity == list.validity {
		for uid, r := range ml.recs {
			if !r.gone && !live[uid] {
				cs = append(cs, change{uid: uid, gone: true}) // expunged by another program
			}
		}
	}
	if rewritten || ml.validity != list.validity || ml.lines > 2*len(msgs)+1024 {
		rec := make(map[uint32]modseqRec, len(msgs))
		next := ml.highest
		if len(cs) > len(pend) {
			next++ // the expunges raise HIGHESTMODSEQ
		}
		for _, msg := range pend {
			next++
			msg.modseq = next
		}
		for _, msg := range msgs {
			rec[msg.uid] = modseqRec{modseq: msg.modseq, info: msg.info}
		}
		ml.highest = max(ml.highest, next)
		if err := ml.compact(list.validity, rec); err != nil {
			return err
		}
	} else if len(cs) > 0 {
		ms, err := ml.append(cs)
		if err != nil {
			return err
		}
		for i, msg := range pend {
			msg.modseq = ms[i]
		}
	}
	sf.byBase, sf.msgs, sf.loaded = byBase, msgs, true
	return nil
}

// minKnownFiles: a look at a folder that must describe more messages than
// this takes what it can from the persistent index instead of a stat
// each.
const minKnownFiles = 64

// knownFiles returns the index's rows of the folder by file name, when
// n messages are to be described and an index is in use; else nil.
func (sf *folderShared) knownFiles(n int) map[string]index.Listed {
	if sf.m.index == nil || n < minKnownFiles {
		return nil
	}
	ls, err := sf.m.index.Known(index.BoxName(sf.mailbox, sf.ref.name))
	if err != nil {
		return nil // described from the files
	}
	known := make(map[string]index.Listed, len(ls))
	for _, l := range ls {
		if _, name, ok := splitLoc(l.Loc); ok {
			known[name] = l
		}
	}
	return known
}

// fromIndex is describe from the index's row of the file f: the same
// message (the row names this very file), without a stat.
func fromIndex(f found, l index.Listed) *fmsg {
	_, ours := ourFileID(f.name)
	return &fmsg{base: baseName(f.name), id: l.ID, size: l.Size, order: l.Order,
		received: time.Unix(0, l.MTime), foreign: !ours}
}

// describe returns the message of the file f in dir (ok false: gone).
func describe(dir string, f found, buf *[]byte) (*fmsg, bool, error) {
	p := filepath.Join(dir, f.sub, f.name)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	msg := &fmsg{base: baseName(f.name), received: fi.ModTime(), order: fi.ModTime().UnixNano()}
	if id, ours := ourFileID(f.name); ours {
		msg.id, msg.size, msg.order = id, fi.Size(), store.IDTime(id)
		return msg, true, nil
	}
	msg.foreign, msg.id = true, foreignUID(msg.base)
	if w, ok := wireSizeOfName(msg.base); ok {
		msg.size = w
		return msg, true, nil
	}
	fh, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer fh.Close()
	if *buf == nil {
		*buf = make([]byte, normBufSize)
	}
	if msg.size, err = normalizedSize(fh, *buf); err != nil {
		return nil, false, err
	}
	return msg, true, nil
}

// wireSizeOfName returns the ",W=<size>" of a Dovecot file name: the size
// with CRLF line ends, which Dovecot's own files record.
func wireSizeOfName(base string) (int64, bool) {
	for _, part := range strings.Split(base, ",")[1:] {
		if v, ok := strings.CutPrefix(part, "W="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil && n >= 0
		}
	}
	return 0, false
}

// flagsOf returns the IMAP flags of flag letters, system flags first.
func (sf *folderShared) flagsOf(info string) []string {
	var out []string
	for _, s := range systemFlags {
		if strings.IndexByte(info, s.letter) >= 0 {
			out = append(out, s.flag)
		}
	}
	for i := 0; i < len(info); i++ {
		if c := info[i]; c >= 'a' && c <= 'z' {
			if k := int(c - 'a'); k < len(sf.keywords) && sf.keywords[k] != "" {
				out = append(out, sf.keywords[k])
			}
		}
	}
	return out
}

// stateLocked returns a copy of the listing.
func (sf *folderShared) stateLocked() *store.FolderState {
	if sf.snap != nil {
		return sf.snap
	}
	st := &store.FolderState{UIDValidity: sf.list.validity, UIDNext: sf.list.next, Messages: make([]store.FolderMessage, len(sf.msgs))}
	if sf.modlog != nil {
		st.HighestModSeq = sf.modlog.highest
	}
	for i, msg := range sf.msgs {
		st.Messages[i] = sf.folderMessage(msg)
	}
	n := 0
	for _, k := range sf.keywords {
		if k != "" {
			st.Keywords = append(st.Keywords, k)
			n++
		}
	}
	st.KeywordsFull = n >= maxKeywords
	sf.snap = st
	return st
}

func (sf *folderShared) folderMessage(msg *fmsg) store.FolderMessage {
	return store.FolderMessage{UID: msg.uid, ID: msg.id, Flags: sf.flagsOf(msg.info), Size: msg.size, Received: msg.received, ModSeq: msg.modseq}
}

// byUID returns the message with uid.
func (sf *folderShared) byUID(uid uint32) *fmsg {
	i, ok := slices.BinarySearchFunc(sf.msgs, uid, func(m *fmsg, u uint32) int { return cmp.Compare(m.uid, u) })
	if !ok {
		return nil
	}
	return sf.msgs[i]
}

// selectLocked returns the messages with the given UIDs, ascending (all,
// when uids is nil).
func (sf *folderShared) selectLocked(uids []uint32) []*fmsg {
	if uids == nil {
		return slices.Clone(sf.msgs)
	}
	u := slices.Clone(uids)
	slices.Sort(u)
	u = slices.Compact(u)
	var out []*fmsg
	for _, uid := range u {
		if msg := sf.byUID(uid); msg != nil {
			out = append(out, msg)
		}
	}
	return out
}

// lettersFor maps IMAP flags to Maildir letters: system flags to their
// letters, keywords to theirs (defined in dovecot-keywords, under its
// lock, when define is set and they are new). \Recent and unknown system
// flags are not stored. store.ErrTooManyKeywords when a 27th keyword would
// be needed.
func (sf *folderShared) lettersFor(flags []string, define bool) (string, error) {
	var letters []byte
	var missing []string
	for _, fl := range flags {
		if strings.HasPrefix(fl, `\`) {
			for _, s := range systemFlags {
				if strings.EqualFold(fl, s.flag) {
					letters = append(letters, s.letter)
				}
			}
			continue
		}
		if i := keywordIndex(sf.keywords, fl); i >= 0 {
			letters = append(letters, byte('a'+i))
		} else if define && fl != "" {
			missing = append(missing, fl)
		}
	}
	if len(missing) > 0 {
		if err := sf.defineKeywords(missing); err != nil {
			return "", err
		}
		for _, fl := range missing {
			if i := keywordIndex(sf.keywords, fl); i >= 0 {
				letters = append(letters, byte('a'+i))
			}
		}
	}
	return sortInfo(letters), nil
}

// keywordIndex returns the index of keyword kw (compared
// case-insensitively, RFC 9051 §2.3.2), or -1.
func keywordIndex(kws []string, kw string) int {
	for i, k := range kws {
		if k != "" && strings.EqualFold(k, kw) {
			return i
		}
	}
	return -1
}

// defineKeywords adds keywords to dovecot-keywords, under its dotlock,
// durably.
func (sf *folderShared) defineKeywords(kws []string) error {
	path := filepath.Join(sf.dir, keywordsName)
	lk, err := takeDotlock(path)
	if err != nil {
		return err
	}
	cur, err := readKeywords(path)
	if err != nil {
		lk.release()
		return err
	}
	for _, kw := range kws {
		if keywordIndex(cur, kw) >= 0 {
			continue
		}
		slot := slices.Index(cur, "")
		if slot < 0 {
			if len(cur) >= maxKeywords {
				lk.release()
				sf.keywords = cur
				return store.ErrTooManyKeywords
			}
			cur = append(cur, "")
			slot = len(cur) - 1
		}
		cur[slot] = kw
	}
	if err := lk.replace(sf.m, keywordsBytes(cur)); err != nil {
		return err
	}
	sf.keywords = cur
	return nil
}

// publish reports a change of this folder's messages to the store's
// subscribers (and so to every Folder open on it).
func (sf *folderShared) publish(kind store.EventKind, ids []string, size int64) {
	ev := store.Event{Kind: kind, Mailbox: sf.mailbox, IDs: ids, Size: size}
	if !sf.ref.inbox() {
		ev.Folder = sf.ref.name
	}
	sf.m.Publish(ev)
}
