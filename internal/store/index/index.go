// Package index keeps a summary of every message of the mailboxes of a
// file-based store (the Maildir), so that listing and searching a mailbox
// does not read its messages: it is that store's store.Browser. The store
// stays the source of truth; the index reads and changes it through a
// Source and can be rebuilt from it at any time.
package index

import (
	"cmp"
	"fmt"
	"io"
	"mime"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/charset"

	"postoffice/internal/store"
)

// Index keeps a header summary of every message of the mailboxes it is
// asked about. A mailbox's summary is built on first use, reconciled with
// the Source whenever its stamp changes or an event of the mailbox is
// published (only the messages not seen before are read), and can be
// rebuilt from scratch at any time. It is safe for concurrent use.
type Index struct {
	src    Source
	dec    mime.WordDecoder
	cancel func()

	mu    sync.Mutex
	boxes map[string]*boxIndex
}

var _ store.Browser = (*Index)(nil)

// Options configures an Index.
type Options struct {
	// CharsetReader converts text in a charset other than UTF-8, US-ASCII
	// and ISO-8859-1 to UTF-8 when decoding RFC 2047 encoded words (see
	// mime.WordDecoder). Nil means every charset go-message knows.
	CharsetReader func(charset string, input io.Reader) (io.Reader, error)
}

// entry is one indexed message.
type entry struct {
	store.Summary
	key   string // Source key: stable across flag changes
	loc   string // Source location: where it is now
	order int64  // ns: arrival time, the sort key
}

// boxIndex is the summary of one mailbox.
type boxIndex struct {
	name  string
	dirty atomic.Bool // an event was published since the last reconcile

	mu     sync.Mutex
	built  bool
	stamp  string // the Source's stamp at the last reconcile
	byKey  map[string]*entry
	byID   map[string]*entry
	sorted []*entry // newest first
	size   int64
	unseen int
}

// New returns an Index of src's mailboxes. It subscribes to src's events;
// Close unsubscribes.
func New(src Source, opts Options) *Index {
	x := &Index{src: src, boxes: make(map[string]*boxIndex)}
	x.dec.CharsetReader = opts.CharsetReader
	if x.dec.CharsetReader == nil {
		x.dec.CharsetReader = charset.Reader
	}
	x.cancel = src.Subscribe(func(ev store.Event) {
		if ev.Folder != "" {
			return // the index is of INBOX
		}
		x.mu.Lock()
		b := x.boxes[ev.Mailbox]
		x.mu.Unlock()
		if b != nil {
			b.dirty.Store(true)
		}
	})
	return x
}

// Close stops following the Source's events.
func (x *Index) Close() { x.cancel() }

// Subscribe implements store.Events with the Source's events.
func (x *Index) Subscribe(fn func(store.Event)) (cancel func()) { return x.src.Subscribe(fn) }

// box returns the index of mailbox, reconciled with the Source.
func (x *Index) box(mailbox string) (*boxIndex, error) {
	if !store.ValidMailboxName(mailbox) {
		return nil, store.ErrBadMailbox
	}
	x.mu.Lock()
	b := x.boxes[mailbox]
	if b == nil {
		b = &boxIndex{name: mailbox}
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
// Source.
func (x *Index) Rebuild(mailbox string) error {
	b, err := x.box(mailbox)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return x.reconcile(b, true)
}

// reconcile brings b up to date with the Source; b.mu is held. It scans
// the mailbox only when its stamp changed (or full is set), and reads a
// message only when its key is new to the index.
func (x *Index) reconcile(b *boxIndex, full bool) error {
	stamp, settled, err := x.src.Stamp(b.name)
	if err != nil {
		return err
	}
	if b.built && !full && !b.dirty.Load() && stamp == b.stamp && settled {
		return nil
	}
	b.dirty.Store(false)
	if full || !b.built {
		b.byKey = make(map[string]*entry)
	}
	scanned, err := x.src.Scan(b.name)
	if err != nil {
		return err
	}
	seen := make(map[string]Scanned, len(scanned))
	for _, s := range scanned {
		seen[s.Key] = s
	}
	// Drop what is gone, follow renames, collect what is new.
	for key, en := range b.byKey {
		s, ok := seen[key]
		if !ok {
			delete(b.byKey, key)
			continue
		}
		en.loc, en.Seen = s.Loc, s.Seen
		delete(seen, key)
	}
	todo := make([]Scanned, 0, len(seen))
	for _, s := range seen {
		todo = append(todo, s)
	}
	for _, en := range x.readEntries(b.name, todo) {
		if en != nil {
			b.byKey[en.key] = en
		}
	}
	b.resort()
	b.stamp = stamp
	b.built = true
	return nil
}

// readEntries summarizes the messages of todo in parallel; an entry is nil
// where the message could not be read.
func (x *Index) readEntries(mailbox string, todo []Scanned) []*entry {
	parsed := make([]*entry, len(todo))
	var wg sync.WaitGroup
	var next atomic.Int64
	workers := min(len(todo), max(2, runtime.GOMAXPROCS(0)))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				parsed[i] = x.readEntry(mailbox, todo[i], &buf)
			}
		}()
	}
	wg.Wait()
	return parsed
}

// resort rebuilds the sorted list, the id map and the counts from byKey;
// b.mu is held.
func (b *boxIndex) resort() {
	b.sorted = b.sorted[:0]
	b.byID = make(map[string]*entry, len(b.byKey))
	b.size, b.unseen = 0, 0
	for _, en := range b.byKey {
		b.sorted = append(b.sorted, en)
	}
	slices.SortFunc(b.sorted, func(a, c *entry) int {
		return cmp.Or(cmp.Compare(c.order, a.order), strings.Compare(c.key, a.key))
	})
	// Two messages with one id (possible only for foreign names): keep the
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
}

// readEntry summarizes one message; nil when it vanished or cannot be read
// (it will be tried again at the next reconcile that sees it).
func (x *Index) readEntry(mailbox string, s Scanned, buf *[]byte) *entry {
	d, ok, err := x.src.Describe(mailbox, s.Loc, buf)
	if err != nil || !ok {
		return nil
	}
	en := &entry{key: s.Key, loc: s.Loc, order: d.Order}
	en.ID, en.Size = d.ID, d.Size
	en.Received = time.Unix(0, d.Order)
	en.Seen = s.Seen
	rc, err := x.src.Open(mailbox, s.Loc, -1)
	if err != nil {
		return nil
	}
	defer rc.Close()
	if err := summarize(rc, &en.Summary, &x.dec); err != nil {
		return nil
	}
	return en
}

// Mailboxes implements store.Browser: every mailbox of the Source, with
// its counts.
func (x *Index) Mailboxes() ([]store.MailboxInfo, error) {
	names, err := x.src.Mailboxes()
	if err != nil {
		return nil, fmt.Errorf("mailboxes: %w", err)
	}
	var out []store.MailboxInfo
	for _, name := range names {
		info, err := x.Mailbox(name)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Mailbox implements store.Browser.
func (x *Index) Mailbox(mailbox string) (store.MailboxInfo, error) {
	b, err := x.box(mailbox)
	if err != nil {
		return store.MailboxInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return store.MailboxInfo{Name: mailbox, Messages: len(b.sorted), Unseen: b.unseen, Size: b.size}, nil
}

// Get implements store.Browser.
func (x *Index) Get(mailbox, id string) (store.Summary, error) {
	b, err := x.box(mailbox)
	if err != nil {
		return store.Summary{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	en, ok := b.byID[id]
	if !ok {
		return store.Summary{}, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	return en.Summary, nil
}

// List implements store.Browser. Header conditions are checked against
// the summaries; a text condition reads the first store.MaxSearchBytes of
// each remaining candidate, without the mailbox's lock.
func (x *Index) List(mailbox string, q store.Query, offset, limit int) (store.ListResult, error) {
	b, err := x.box(mailbox)
	if err != nil {
		return store.ListResult{}, err
	}
	b.mu.Lock()
	if q.IsZero() {
		var res store.ListResult
		res.Total = len(b.sorted)
		if offset < len(b.sorted) {
			for _, en := range b.sorted[offset:min(len(b.sorted), offset+limit)] {
				res.Messages = append(res.Messages, en.Summary)
			}
		}
		b.mu.Unlock()
		return res, nil
	}
	// Copy what the body search needs, then read messages without the lock.
	type cand struct {
		store.Summary
		loc string
	}
	var cs []cand
	for _, en := range b.sorted {
		if q.MatchSummary(&en.Summary) {
			cs = append(cs, cand{en.Summary, en.loc})
		}
	}
	b.mu.Unlock()

	var res store.ListResult
	for _, c := range cs {
		if len(q.Text) > 0 {
			if q.BodyMatch == nil || !x.matchBody(mailbox, c.loc, q) {
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

// matchBody runs q.BodyMatch on the first store.MaxSearchBytes of a
// message.
func (x *Index) matchBody(mailbox, loc string, q store.Query) bool {
	rc, err := x.src.Open(mailbox, loc, -1)
	if err != nil {
		return false
	}
	defer rc.Close()
	return q.BodyMatch(io.LimitReader(rc, store.MaxSearchBytes), q.Text)
}
