package store

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Index keeps a header summary of every message of the mailboxes it is
// asked about, so that listing and searching a mailbox does not read its
// messages. The Maildir stays the source of truth: a mailbox's summary is
// built on first use, reconciled with new/ and cur/ whenever their
// modification times change or an Event of the mailbox is published (only
// the files not seen before are read), and can be rebuilt from scratch at
// any time. It is safe for concurrent use.
type Index struct {
	m      *Maildir
	dec    mime.WordDecoder
	cancel func()

	mu    sync.Mutex
	boxes map[string]*boxIndex
}

// IndexOptions configures an Index.
type IndexOptions struct {
	// CharsetReader converts text in a charset other than UTF-8, US-ASCII
	// and ISO-8859-1 to UTF-8 when decoding RFC 2047 encoded words (see
	// mime.WordDecoder). Nil leaves such words undecoded.
	CharsetReader func(charset string, input io.Reader) (io.Reader, error)
}

// entry is one indexed message.
type entry struct {
	Summary
	sub     string // "new" or "cur"
	name    string // file name
	foreign bool
	order   int64 // ns: id time (ours) or mtime (foreign)
}

// boxIndex is the summary of one mailbox.
type boxIndex struct {
	dir   string
	dirty atomic.Bool // an event was published since the last reconcile

	mu       sync.Mutex
	built    bool
	mtimes   [2]time.Time // of new/ and cur/ at the last reconcile
	byBase   map[string]*entry
	byID     map[string]*entry
	sorted   []*entry // newest first
	size     int64
	unseen   int
	reconcAt time.Time
}

// racyWindow: a directory modified this recently may change again within
// the same timestamp tick, so its unchanged mtime proves nothing.
const racyWindow = 2 * time.Second

// NewIndex returns an Index of m's mailboxes. It subscribes to m's events;
// Close unsubscribes.
func NewIndex(m *Maildir, opts IndexOptions) *Index {
	x := &Index{m: m, boxes: make(map[string]*boxIndex)}
	x.dec.CharsetReader = opts.CharsetReader
	x.cancel = m.Subscribe(func(ev Event) {
		x.mu.Lock()
		b := x.boxes[ev.Mailbox]
		x.mu.Unlock()
		if b != nil {
			b.dirty.Store(true)
		}
	})
	return x
}

// Close stops following the Maildir's events.
func (x *Index) Close() { x.cancel() }

// Maildir returns the store the index describes.
func (x *Index) Maildir() *Maildir { return x.m }

// box returns the index of mailbox, reconciled with the Maildir.
func (x *Index) box(mailbox string) (*boxIndex, error) {
	if !ValidMailboxName(mailbox) {
		return nil, ErrBadMailbox
	}
	x.mu.Lock()
	b := x.boxes[mailbox]
	if b == nil {
		b = &boxIndex{dir: x.m.mailboxDir(mailbox)}
		x.boxes[mailbox] = b
	}
	x.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := x.reconcile(b, false); err != nil {
		return nil, fmt.Errorf("index %s: %w", mailbox, err)
	}
	return b, nil
}

// Rebuild forgets the summary of mailbox and reads it again from the
// Maildir.
func (x *Index) Rebuild(mailbox string) error {
	b, err := x.box(mailbox)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return x.reconcile(b, true)
}

// dirMtimes returns the modification times of dir/new and dir/cur (zero
// when missing).
func dirMtimes(dir string) ([2]time.Time, error) {
	var t [2]time.Time
	for i, sub := range []string{subNew, subCur} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return t, err
		}
		t[i] = fi.ModTime()
	}
	return t, nil
}

// reconcile brings b up to date with the directories; b.mu is held. It
// reads the directories only when they changed (or full is set), and the
// header of a file only when its base name is new to the index.
func (x *Index) reconcile(b *boxIndex, full bool) error {
	mt, err := dirMtimes(b.dir)
	if err != nil {
		return err
	}
	now := time.Now()
	if b.built && !full && !b.dirty.Load() && mt == b.mtimes &&
		now.Sub(mt[0]) > racyWindow && now.Sub(mt[1]) > racyWindow {
		return nil
	}
	b.dirty.Store(false)
	if full || !b.built {
		b.byBase = make(map[string]*entry)
	}
	type found struct {
		sub, name string
		e         fs.DirEntry
	}
	seen := make(map[string]found, len(b.byBase))
	for _, sub := range []string{subNew, subCur} {
		entries, err := os.ReadDir(filepath.Join(b.dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
				continue
			}
			seen[baseName(name)] = found{sub, name, e}
		}
	}
	// Drop what is gone, follow renames, collect what is new.
	for base, en := range b.byBase {
		f, ok := seen[base]
		if !ok {
			delete(b.byBase, base)
			continue
		}
		en.sub, en.name = f.sub, f.name
		en.Seen = seenFlag(f.sub, f.name)
		delete(seen, base)
	}
	var todo []found
	for _, f := range seen {
		todo = append(todo, f)
	}
	parsed := make([]*entry, len(todo))
	var wg sync.WaitGroup
	var next atomic.Int64
	workers := min(len(todo), max(2, runtime.GOMAXPROCS(0)))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, normBufSize)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				parsed[i] = x.readEntry(b.dir, todo[i].sub, todo[i].e, buf)
			}
		}()
	}
	wg.Wait()
	for _, en := range parsed {
		if en != nil {
			b.byBase[baseName(en.name)] = en
		}
	}
	b.sorted = b.sorted[:0]
	b.byID = make(map[string]*entry, len(b.byBase))
	b.size, b.unseen = 0, 0
	for _, en := range b.byBase {
		b.sorted = append(b.sorted, en)
	}
	slices.SortFunc(b.sorted, func(a, c *entry) int {
		return cmp.Or(cmp.Compare(c.order, a.order), strings.Compare(c.name, a.name))
	})
	// Two files with one id (possible only for foreign names): keep the
	// first, as the POP3 snapshot does (it keeps the oldest).
	out := b.sorted[:0]
	for _, en := range b.sorted {
		if _, dup := b.byID[en.ID]; dup {
			continue
		}
		b.byID[en.ID] = en
		b.size += en.Size
		if !en.Seen {
			b.unseen++
		}
		out = append(out, en)
	}
	b.sorted = out
	b.mtimes = mt
	b.built = true
	b.reconcAt = now
	return nil
}

// readEntry summarizes one message file; nil when it vanished or cannot
// be read (it will be tried again at the next reconcile that sees it).
func (x *Index) readEntry(dir, sub string, de fs.DirEntry, buf []byte) *entry {
	msg, ok, err := scanMessage(dir, sub, de, &buf)
	if err != nil || !ok {
		return nil
	}
	en := &entry{sub: sub, name: msg.name, foreign: msg.foreign, order: msg.order}
	en.ID, en.Size = msg.ID, msg.Size
	en.Received = time.Unix(0, msg.order)
	en.Seen = seenFlag(sub, msg.name)
	f, err := os.Open(filepath.Join(dir, sub, msg.name))
	if err != nil {
		return nil
	}
	defer f.Close()
	if err := summarize(f, &en.Summary, &x.dec); err != nil {
		return nil
	}
	return en
}

// seenFlag reports whether a message file carries the Maildir "S" (seen)
// flag: it is in cur/ and its info ":2,<flags>" has 'S'.
func seenFlag(sub, name string) bool {
	if sub != subCur {
		return false
	}
	i := strings.Index(name, ":2,")
	return i >= 0 && strings.IndexByte(name[i+3:], 'S') >= 0
}

// MailboxInfo is the size of one mailbox.
type MailboxInfo struct {
	Name     string
	Messages int
	Unseen   int
	Size     int64
}

// Mailboxes returns every mailbox under the root (directories with a
// valid mailbox name), sorted by name, with their counts.
func (x *Index) Mailboxes() ([]MailboxInfo, error) {
	entries, err := os.ReadDir(x.m.root)
	if err != nil {
		return nil, fmt.Errorf("mailboxes: %w", err)
	}
	var out []MailboxInfo
	for _, e := range entries {
		if !e.IsDir() || !ValidMailboxName(e.Name()) {
			continue
		}
		info, err := x.Mailbox(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Mailbox returns the counts of one mailbox; a mailbox that does not exist
// yet is empty.
func (x *Index) Mailbox(mailbox string) (MailboxInfo, error) {
	b, err := x.box(mailbox)
	if err != nil {
		return MailboxInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return MailboxInfo{Name: mailbox, Messages: len(b.sorted), Unseen: b.unseen, Size: b.size}, nil
}

// Get returns the summary of message id of mailbox, or ErrNotFound.
func (x *Index) Get(mailbox, id string) (Summary, error) {
	b, err := x.box(mailbox)
	if err != nil {
		return Summary{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	en, ok := b.byID[id]
	if !ok {
		return Summary{}, fmt.Errorf("message %s: %w", id, ErrNotFound)
	}
	return en.Summary, nil
}

// ListResult is one page of a listing.
type ListResult struct {
	// Total is the number of messages matching the query.
	Total int
	// Messages are the matches from the requested offset, newest first.
	Messages []Summary
}

// List returns the messages of mailbox matching q (all for a zero Query),
// newest first, skipping offset matches and returning at most limit.
func (x *Index) List(mailbox string, q Query, offset, limit int) (ListResult, error) {
	b, err := x.box(mailbox)
	if err != nil {
		return ListResult{}, err
	}
	b.mu.Lock()
	var cands []*entry
	if q.IsZero() {
		var res ListResult
		res.Total = len(b.sorted)
		if offset < len(b.sorted) {
			for _, en := range b.sorted[offset:min(len(b.sorted), offset+limit)] {
				res.Messages = append(res.Messages, en.Summary)
			}
		}
		b.mu.Unlock()
		return res, nil
	}
	for _, en := range b.sorted {
		if q.matchSummary(&en.Summary) {
			cands = append(cands, en)
		}
	}
	// Copy what the body search needs, then read files without the lock.
	type cand struct {
		Summary
		sub, name string
		foreign   bool
	}
	cs := make([]cand, len(cands))
	for i, en := range cands {
		cs[i] = cand{en.Summary, en.sub, en.name, en.foreign}
	}
	dir := b.dir
	b.mu.Unlock()

	var res ListResult
	for _, c := range cs {
		if len(q.Text) > 0 {
			if q.BodyMatch == nil || !x.matchBody(dir, c.sub, c.name, c.foreign, c.Size, q) {
				continue
			}
		}
		if res.Total >= offset && len(res.Messages) < limit {
			res.Messages = append(res.Messages, c.Summary)
		}
		res.Total++
	}
	return res, nil
}

// MaxSearchBytes bounds how much of each message a text search reads.
const MaxSearchBytes = 1 << 20

// matchBody runs q.BodyMatch on the first MaxSearchBytes of a message.
func (x *Index) matchBody(dir, sub, name string, foreign bool, size int64, q Query) bool {
	f, err := os.Open(filepath.Join(dir, sub, name))
	if err != nil {
		return false
	}
	defer f.Close()
	var r io.Reader = f
	if foreign {
		r = newCRLFReader(f, size)
	}
	return q.BodyMatch(io.LimitReader(r, MaxSearchBytes), q.Text)
}
