// Package index keeps a persistent summary and full-text index of every
// message of the folders of a file-based store (the Maildir), so that
// listing, searching and opening a POP3 maildrop does not read or stat its
// messages: it is that store's store.Browser, and the source of the POP3
// listing and of IMAP's text searches. The store stays the source of
// truth: the index is one SQLite file per folder (Source.IndexFile), reconciled
// with the store whenever the store's stamp (directory modification times)
// says it changed, and rebuilt from it when missing, damaged or of another
// version.
//
// Indexing never runs on the delivery path: a delivery's event queues its
// messages, and a background worker reads and indexes them after the
// delivery is durable and acknowledged. A message not yet indexed is still
// listed and served, its summary read from its file.
package index

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/charset"

	"postoffice/internal/store"
)

// Index keeps the index files of the folders it is asked about, opening
// each on first use. It is safe for concurrent use, and several processes
// may use one index file (SQLite locks it).
type Index struct {
	src  Source
	dec  mime.WordDecoder
	log  *slog.Logger
	opts Options

	cancel func()
	evq    chan store.Event
	stop   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	boxes  map[string]*box
	closed bool
}

var _ store.Browser = (*Index)(nil)

// Options configures an Index.
type Options struct {
	// CharsetReader converts text in a charset other than UTF-8, US-ASCII
	// and ISO-8859-1 to UTF-8 when decoding RFC 2047 encoded words (see
	// mime.WordDecoder). Nil means every charset go-message knows.
	CharsetReader func(charset string, input io.Reader) (io.Reader, error)
	// Logger receives what reconciling finds (messages added, removed or
	// moved behind the index's back) and index files rebuilt.
	Logger *slog.Logger
	// NoBackground turns off indexing after delivery: messages are then
	// indexed when a listing or search first needs them.
	NoBackground bool
	// Precompute, when set, is applied to each message as it is indexed
	// (the whole message, when it is at most store.MaxSearchBytes), and
	// what it returns is kept with the row for Precomputed: what a
	// protocol would otherwise parse from the file at every cold read (the
	// IMAP ENVELOPE and BODYSTRUCTURE). The index does not look inside.
	Precompute func(raw []byte) []byte
}

// box is the index of one folder.
type box struct {
	name string // Source box name (BoxName)
	path string // the index file

	// mu serializes the writers of this process (reconcile, indexing,
	// the browser's changes); readers do not take it.
	mu       sync.Mutex
	db       *sql.DB
	stamp    string // the Source stamp the rows reflect
	settled  bool   // the stamp was settled when the rows were read
	lastScan time.Time
	scanCost time.Duration // how long the last scan took
	dirty    atomic.Bool   // an event says the rows may be stale
	queued   atomic.Bool   // in the worker's queue
}

// BoxName names a folder of mailbox for a Source: the mailbox itself for
// INBOX (folder ""), else mailbox "/" folder.
func BoxName(mailbox, folder string) string {
	if folder == "" || strings.EqualFold(folder, "INBOX") {
		return mailbox
	}
	return mailbox + "/" + folder
}

// New returns an Index of src's mailboxes. It subscribes to src's events
// and starts the background indexer; Close stops both.
func New(src Source, opts Options) *Index {
	x := &Index{src: src, opts: opts, log: opts.Logger, boxes: make(map[string]*box),
		evq: make(chan store.Event, 4096), stop: make(chan struct{})}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	x.dec.CharsetReader = opts.CharsetReader
	if x.dec.CharsetReader == nil {
		x.dec.CharsetReader = charset.Reader
	}
	x.cancel = src.Subscribe(x.onEvent)
	x.wg.Add(1)
	go x.worker()
	return x
}

// onEvent runs in the publisher's goroutine (a delivery, a POP3 commit):
// it only queues, never waits.
func (x *Index) onEvent(ev store.Event) {
	select {
	case x.evq <- ev:
	default:
		// The queue is full: the next reconcile finds the change.
		if b := x.openedBox(BoxName(ev.Mailbox, ev.Folder)); b != nil {
			b.dirty.Store(true)
		}
	}
}

// Close stops following the Source's events, waits for the indexer and
// closes the index files.
func (x *Index) Close() {
	x.cancel()
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return
	}
	x.closed = true
	close(x.stop)
	x.mu.Unlock()
	x.wg.Wait()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, b := range x.boxes {
		b.mu.Lock()
		if b.db != nil {
			b.db.Close()
			b.db = nil
		}
		b.mu.Unlock()
	}
}

// Subscribe implements store.Events with the Source's events.
func (x *Index) Subscribe(fn func(store.Event)) (cancel func()) { return x.src.Subscribe(fn) }

func (x *Index) openedBox(name string) *box {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.boxes[name]
}

// errNoBox: the folder's directory does not exist (yet): it is empty.
var errNoBox = errors.New("no such folder directory")

// get returns the box of name with its index file open.
func (x *Index) get(name string) (*box, error) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil, errors.New("index closed")
	}
	b := x.boxes[name]
	if b == nil {
		b = &box{name: name}
		x.boxes[name] = b
	}
	x.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db != nil {
		return b, nil
	}
	dir, err := x.src.Dir(name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		if os.IsNotExist(err) {
			return nil, errNoBox
		}
		return nil, err
	}
	if b.path, err = x.src.IndexFile(name); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(b.path), 0o700); err != nil {
		return nil, err
	}
	if err := x.openLocked(b); err != nil {
		return nil, err
	}
	return b, nil
}

// openLocked opens b's index file (moving a damaged one aside) and loads
// its stamp; b.mu is held.
func (x *Index) openLocked(b *box) error {
	db, _, err := openDB(b.path, x.log)
	if err != nil {
		return err
	}
	stamp, err := metaGet(db, "stamp")
	if err != nil {
		db.Close()
		return err
	}
	b.db = db
	b.stamp, b.settled = strings.CutSuffix(stamp, " settled")
	b.lastScan = time.Time{}
	return nil
}

// recover handles an error of an operation on b: a damaged index file is
// moved aside and a new one built, and true says to retry.
func (x *Index) recover(b *box, err error) bool {
	if !isCorrupt(err) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db != nil {
		b.db.Close()
		b.db = nil
	}
	aside, qerr := quarantine(b.path)
	if qerr != nil {
		x.log.Error("index damaged and cannot be moved aside", "path", b.path, "err", qerr)
		return false
	}
	x.log.Warn("index damaged: moved aside, rebuilding from the Maildir", "path", b.path, "moved_to", aside, "err", err)
	return x.openLocked(b) == nil
}

// do runs fn on the box of name, with one retry after rebuilding a
// damaged index file. A folder whose directory does not exist yet runs
// fn with a nil box.
func (x *Index) do(name string, fn func(b *box) error) error {
	for try := 0; ; try++ {
		b, err := x.get(name)
		if errors.Is(err, errNoBox) {
			return fn(nil)
		}
		if err != nil {
			return err
		}
		err = fn(b)
		if err == nil || try > 0 || !x.recover(b, err) {
			return err
		}
	}
}

// scanShare bounds the time listings spend rescanning a folder that keeps
// changing (deliveries arriving): after a scan that took d, a listing
// rescans only once scanShare×d has passed, and is served from the index
// and the deliveries' events meanwhile. A folder scanned in under
// minThrottledScan is rescanned at every change; one of 100,000 messages (a scan of about 100 ms) at most
// every second. POP3 and explicit reconciles always rescan a changed
// folder.
const scanShare = 8

// minThrottledScan: a folder scanned faster than this is rescanned at
// every change.
const minThrottledScan = 20 * time.Millisecond

// reconcile brings the rows of b up to date with the Source when its
// stamp says the folder changed, or when force is set. Unless exact, it
// rescans a changing folder at most every scanInterval. It returns what
// it found.
func (x *Index) reconcile(b *box, exact, force bool) (Diff, error) {
	stamp, settled, err := x.src.Stamp(b.name)
	if err != nil {
		return Diff{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return Diff{}, errors.New("index closed")
	}
	if !force && !b.dirty.Load() && stamp == b.stamp && b.settled {
		return Diff{}, nil
	}
	if !force && !exact && b.scanCost >= minThrottledScan && time.Since(b.lastScan) < scanShare*b.scanCost {
		return Diff{}, nil
	}
	b.dirty.Store(false)
	began := time.Now()
	scanned, err := x.src.Scan(b.name)
	if err != nil {
		return Diff{}, err
	}
	type row struct {
		rowid   int64
		loc     string
		indexed int
	}
	have := make(map[string]row, len(scanned))
	rows, err := b.db.Query("SELECT rowid, key, loc, indexed FROM msgs")
	if err != nil {
		return Diff{}, err
	}
	for rows.Next() {
		var r row
		var key string
		if err := rows.Scan(&r.rowid, &key, &r.loc, &r.indexed); err != nil {
			rows.Close()
			return Diff{}, err
		}
		have[key] = r
	}
	if err := rows.Close(); err != nil {
		return Diff{}, err
	}
	var d Diff
	tx, err := b.db.Begin()
	if err != nil {
		return Diff{}, err
	}
	defer tx.Rollback()
	var buf []byte
	var ins *sql.Stmt
	for _, s := range scanned {
		r, ok := have[s.Key]
		if ok {
			delete(have, s.Key)
			if r.loc == s.Loc {
				continue
			}
			d.Moved++
			// A row that could not be read where it was is tried again.
			if _, err := tx.Exec("UPDATE msgs SET loc = ?, seen = ?, indexed = CASE indexed WHEN 2 THEN 0 ELSE indexed END WHERE rowid = ?",
				s.Loc, s.Seen, r.rowid); err != nil {
				return Diff{}, err
			}
			continue
		}
		desc, ok, err := x.src.Describe(b.name, s.Loc, &buf)
		if err != nil {
			return Diff{}, err
		}
		if !ok {
			continue // gone meanwhile
		}
		if ins == nil {
			if ins, err = tx.Prepare(insertSQL); err != nil {
				return Diff{}, err
			}
			defer ins.Close()
		}
		if err := insertRow(tx, ins, s.Key, s.Loc, desc, s.Seen); err != nil {
			return Diff{}, err
		}
		d.Added++
	}
	for _, r := range have {
		if _, err := tx.Exec("DELETE FROM msgs WHERE rowid = ?", r.rowid); err != nil {
			return Diff{}, err
		}
		d.Removed++
	}
	v := stamp
	if settled {
		v += " settled"
	}
	if err := metaSet(tx, "stamp", v); err != nil {
		return Diff{}, err
	}
	if err := tx.Commit(); err != nil {
		return Diff{}, err
	}
	b.stamp, b.settled, b.lastScan = stamp, settled, time.Now()
	b.scanCost = b.lastScan.Sub(began)
	if d.Added+d.Removed+d.Moved > 0 {
		x.log.Info("index reconciled with the Maildir", "folder", b.name,
			"added", d.Added, "removed", d.Removed, "moved", d.Moved, "messages", len(scanned))
		if d.Added > 0 {
			x.kick(b)
		}
	}
	return d, nil
}

// Diff is what a reconcile found changed in a folder.
type Diff struct {
	Added, Removed, Moved int
}

// kick queues b for the background indexer.
func (x *Index) kick(b *box) {
	if x.opts.NoBackground || !b.queued.CompareAndSwap(false, true) {
		return
	}
	select {
	case x.evq <- store.Event{Kind: kickEvent, Mailbox: b.name, IDs: []string{""}}:
	default:
		b.queued.Store(false)
	}
}

// kickEvent is an internal event kind: index the box named Mailbox.
const kickEvent store.EventKind = "index"

// worker applies the Source's events to the index files and indexes new
// messages, off the delivery path. It stays out of the deliveries' way:
// arrivals are recorded in batches (one transaction per batch, not per
// message), and messages are read into the full-text index only once no
// message arrived for quietPeriod. Until then they are listed, counted and
// served from their files, and a text search indexes what it needs first.
func (x *Index) worker() {
	defer x.wg.Done()
	todo := map[string]bool{}
	arrived := map[string][]string{} // box -> ids not yet recorded
	narrived := 0
	var lastArrival time.Time
	tick := time.NewTicker(arrivalFlush)
	defer tick.Stop()
	for {
		quiet := time.Since(lastArrival) >= quietPeriod
		if narrived > 0 && (quiet || narrived >= arrivalBatch) {
			x.recordArrivals(arrived)
			narrived = 0
		}
		if len(todo) > 0 && quiet {
			select {
			case <-x.stop:
				return
			case ev := <-x.evq:
				x.take(ev, todo, arrived, &narrived, &lastArrival)
			default:
				// No event waiting: index a batch of one box.
				for name := range todo {
					more, err := x.indexSome(name, indexBatch)
					if err != nil && !errors.Is(err, errNoBox) {
						x.log.Warn("indexing failed", "folder", name, "err", err)
					}
					if !more || err != nil {
						delete(todo, name)
					}
					break
				}
			}
			continue
		}
		select {
		case <-x.stop:
			return
		case ev := <-x.evq:
			x.take(ev, todo, arrived, &narrived, &lastArrival)
		case <-tick.C:
		}
	}
}

const (
	// quietPeriod: the background indexer reads messages only once no
	// message arrived for this long.
	quietPeriod = 300 * time.Millisecond
	// arrivalFlush and arrivalBatch: arrivals are recorded at least this
	// often, and at the latest once this many are waiting.
	arrivalFlush = 100 * time.Millisecond
	arrivalBatch = 512
)

// recordArrivals adds the rows of the arrivals waiting, one transaction
// a folder, and empties arrived.
func (x *Index) recordArrivals(arrived map[string][]string) {
	for name, ids := range arrived {
		err := x.do(name, func(b *box) error {
			if b == nil {
				return nil
			}
			return x.addDelivered(b, ids)
		})
		if err != nil {
			x.log.Warn("index: recording deliveries failed", "folder", name, "err", err)
		}
		delete(arrived, name)
	}
}

// take handles one event for the worker.
func (x *Index) take(ev store.Event, todo map[string]bool, arrived map[string][]string, n *int, last *time.Time) {
	if ev.Kind == store.EventArrived && ev.Folder == "" && !x.opts.NoBackground {
		arrived[ev.Mailbox] = append(arrived[ev.Mailbox], ev.IDs...)
		*n += len(ev.IDs)
		*last = time.Now()
		todo[ev.Mailbox] = true
		return
	}
	if ev.Kind == store.EventDeleted && len(arrived) > 0 {
		// Record the arrivals first: a deletion may name them.
		x.recordArrivals(arrived)
		*n = 0
	}
	if name := x.applyEvent(ev); name != "" && !x.opts.NoBackground {
		todo[name] = true
	}
}

// indexBatch is how many messages one indexing transaction takes.
const indexBatch = 256

// applyEvent records what an event says in the index, returning the box
// that may have messages to index. Arrivals in INBOX are recorded by take,
// in batches; any other change (arrivals in a folder, flags) marks the
// folder for a rescan.
func (x *Index) applyEvent(ev store.Event) string {
	name := ev.Mailbox
	if ev.Kind != kickEvent {
		name = BoxName(ev.Mailbox, ev.Folder)
	}
	switch ev.Kind {
	case kickEvent:
		if b := x.openedBox(name); b != nil {
			b.queued.Store(false)
		}
		return name
	case store.EventDeleted:
		if b := x.openedBox(name); b != nil {
			b.mu.Lock()
			var err error
			if b.db != nil {
				err = deleteIDs(b.db, ev.IDs)
			}
			b.mu.Unlock()
			if err != nil {
				b.dirty.Store(true)
			}
		}
	default:
		if b := x.openedBox(name); b != nil {
			b.dirty.Store(true)
		}
	}
	return ""
}

// addDelivered adds the rows of messages just delivered to INBOX (files
// new/<id>.eml), unless the rows are there already.
func (x *Index) addDelivered(b *box, ids []string) error {
	var buf []byte
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	tx, err := b.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var ins *sql.Stmt
	for _, id := range ids {
		key := id + ".eml"
		loc := "new/" + key
		d, ok, err := x.src.Describe(b.name, loc, &buf)
		if err != nil || !ok {
			b.dirty.Store(true) // moved already (or unreadable): rescan
			continue
		}
		if ins == nil {
			if ins, err = tx.Prepare(insertSQL); err != nil {
				return err
			}
			defer ins.Close()
		}
		if err := insertRow(tx, ins, key, loc, d, false); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// insertSQL is insertRow's statement, prepared once a transaction.
const insertSQL = "INSERT INTO msgs (rowid, key, loc, id, size, received, seen, mtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"

// insertRow adds the row of a message unless its key has one, with the
// arrival time as rowid (the next free nanosecond on a tie).
func insertRow(tx *sql.Tx, ins *sql.Stmt, key, loc string, d Described, seen bool) error {
	for ord := d.Order; ; ord++ {
		res, err := ins.Exec(ord, key, loc, d.ID, d.Size, d.Order, seen, d.MTime)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		var have int
		if err := tx.QueryRow("SELECT count(*) FROM msgs WHERE key = ?", key).Scan(&have); err != nil {
			return err
		}
		if have > 0 {
			return nil
		}
	}
}

func deleteIDs(db *sql.DB, ids []string) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.Exec("DELETE FROM msgs WHERE id = ?", id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// pendingRow is a message waiting to be indexed.
type pendingRow struct {
	rowid int64
	loc   string
	sum   store.Summary
	body  string
	fetch []byte
	ok    bool
}

// indexSome indexes up to n messages of the box of name not yet indexed,
// reporting whether more wait.
func (x *Index) indexSome(name string, n int) (more bool, err error) {
	err = x.do(name, func(b *box) error {
		if b == nil {
			return nil
		}
		var e error
		more, e = x.indexBatchOf(b, n)
		return e
	})
	return more, err
}

func (x *Index) indexBatchOf(b *box, n int) (bool, error) {
	rows, err := b.db.Query("SELECT rowid, loc FROM msgs WHERE indexed = 0 LIMIT ?", n)
	if err != nil {
		return false, err
	}
	var todo []pendingRow
	for rows.Next() {
		var p pendingRow
		if err := rows.Scan(&p.rowid, &p.loc); err != nil {
			rows.Close()
			return false, err
		}
		todo = append(todo, p)
	}
	if err := rows.Close(); err != nil {
		return false, err
	}
	if len(todo) == 0 {
		return false, nil
	}
	// Read and parse without the lock, in parallel.
	var wg sync.WaitGroup
	var next atomic.Int64
	for range min(len(todo), max(2, runtime.GOMAXPROCS(0))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				p := &todo[i]
				p.body, p.fetch, p.ok = x.readSearchable(b.name, p.loc, &p.sum)
			}
		}()
	}
	wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return false, errors.New("index closed")
	}
	tx, err := b.db.Begin()
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	progress := 0
	for _, p := range todo {
		if !p.ok {
			// Moved meanwhile (a flag change renamed it): the next
			// reconcile finds it where it is now. Still there and
			// unreadable: it is listed without a summary, and tried
			// again when it moves.
			b.dirty.Store(true)
			if there, err := x.src.Exists(b.name, p.loc); err == nil && there {
				if _, err := tx.Exec("UPDATE msgs SET indexed = 2 WHERE rowid = ? AND indexed = 0 AND loc = ?", p.rowid, p.loc); err != nil {
					return false, err
				}
			}
			continue
		}
		progress++
		s := &p.sum
		var date int64
		if !s.Date.IsZero() {
			date = s.Date.Unix()
		}
		res, err := tx.Exec("UPDATE msgs SET indexed = 1, date = ?, hfrom = ?, hto = ?, subject = ?, attach = ?, fetch = ?, tags = ? WHERE rowid = ? AND indexed = 0",
			date, s.From, strings.Join(s.To, "\n"), s.Subject, s.Attachments, p.fetch, tagsColumn(s.Tags), p.rowid)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // removed or indexed meanwhile
		}
		if _, err := tx.Exec("INSERT INTO fts (rowid, hfrom, hto, subject, body) VALUES (?, ?, ?, ?, ?)",
			p.rowid, s.From, strings.Join(s.To, "\n"), s.Subject, p.body); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	// No progress at all (every message moved meanwhile): stop, and let
	// the next reconcile find them.
	return len(todo) == n && progress > 0, nil
}

// readSearchable reads the message at loc: its summary into s, its
// search text, and Options.Precompute of it (nil when the message is
// larger than what is read of it). ok is false when it cannot be read
// (gone, moved).
func (x *Index) readSearchable(name, loc string, s *store.Summary) (text string, fetch []byte, ok bool) {
	rc, err := x.src.Open(name, loc, -1)
	if err != nil {
		return "", nil, false
	}
	raw, err := readLimited(rc)
	rc.Close()
	if err != nil {
		return "", nil, false
	}
	if err := summarize(bytes.NewReader(raw), s, &x.dec); err != nil {
		return "", nil, false
	}
	if x.opts.Precompute != nil && len(raw) < store.MaxSearchBytes {
		fetch = x.opts.Precompute(raw)
	}
	return bodyText(raw, &x.dec), fetch, true
}

// catchUp indexes every message of b not yet indexed; a search needs
// them all.
func (x *Index) catchUp(b *box) error {
	for {
		more, err := x.indexBatchOf(b, 1024)
		if err != nil || !more {
			return err
		}
	}
}

// Listed is one message of a folder as the index has it: what a POP3
// maildrop needs.
type Listed struct {
	Loc, ID     string
	Size, Order int64
	MTime       int64 // the file's modification time in ns; 0 when unknown
}

// Listing returns every message of the folder, after reconciling the
// index with the Source exactly (a folder changed since the index saw it
// is rescanned), oldest first. POP3 opens its maildrop from it
// instead of stat'ing every file.
func (x *Index) Listing(name string) ([]Listed, error) {
	var out []Listed
	err := x.do(name, func(b *box) error {
		out = out[:0]
		if b == nil {
			return nil
		}
		if _, err := x.reconcile(b, true, false); err != nil {
			return err
		}
		var err error
		out, err = listRows(b, out, " ORDER BY rowid")
		return err
	})
	return out, err
}

// listRows appends the Listed of every row of b to out, in the order
// that the SQL clause order gives.
func listRows(b *box, out []Listed, order string) ([]Listed, error) {
	var n int
	if err := b.db.QueryRow("SELECT count(*) FROM msgs").Scan(&n); err != nil {
		return out, err
	}
	out = slices.Grow(out, n+n/16)
	rows, err := b.db.Query("SELECT loc, id, size, received, mtime FROM msgs" + order)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var l Listed
		if err := rows.Scan(&l.Loc, &l.ID, &l.Size, &l.Order, &l.MTime); err != nil {
			return out, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Known returns the rows of a folder as the index has them, without
// looking at the folder: for a caller that checks each row against the
// file it names (IMAP's first look at a folder, which has just read the
// directories), so that a known file needs no stat. A row names one file
// for good (names are unique), so a row found is right about its file.
func (x *Index) Known(name string) ([]Listed, error) {
	var out []Listed
	err := x.do(name, func(b *box) error {
		out = out[:0]
		if b == nil {
			return nil
		}
		var err error
		out, err = listRows(b, out, "")
		return err
	})
	return out, err
}

// Warm reconciles the index of a folder with the Source when its stamp
// says it changed (POP3, before it takes the maildrop lock).
func (x *Index) Warm(name string) error {
	return x.do(name, func(b *box) error {
		if b == nil {
			return nil
		}
		_, err := x.reconcile(b, true, false)
		return err
	})
}

// Reconcile brings the index of a folder up to date with the Source now,
// whatever its stamp says.
func (x *Index) Reconcile(name string) (Diff, error) {
	var d Diff
	err := x.do(name, func(b *box) error {
		if b == nil {
			return nil
		}
		var err error
		d, err = x.reconcile(b, true, true)
		return err
	})
	return d, err
}

// Reindex rebuilds the index of a folder from the Source: every message
// listed and read again. progress, when set, is called after each batch
// with the messages indexed so far and the total. A Reindex cut short
// (killed) leaves an index that lists every message and indexes the rest
// in the background.
func (x *Index) Reindex(name string, progress func(done, total int)) (Diff, int, error) {
	var d Diff
	total := 0
	err := x.do(name, func(b *box) error {
		if b == nil {
			return nil
		}
		var err error
		if d, err = x.reconcile(b, true, true); err != nil {
			return err
		}
		b.mu.Lock()
		_, err = b.db.Exec("UPDATE msgs SET indexed = 0; INSERT INTO fts (fts) VALUES ('delete-all');")
		if err == nil {
			err = b.db.QueryRow("SELECT count(*) FROM msgs").Scan(&total)
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
		done := 0
		for {
			more, err := x.indexBatchOf(b, 1024)
			if err != nil {
				return err
			}
			if err := b.db.QueryRow("SELECT count(*) FROM msgs WHERE indexed <> 0").Scan(&done); err != nil {
				return err
			}
			if progress != nil {
				progress(done, total)
			}
			if !more {
				return nil
			}
		}
	})
	return d, total, err
}

// Flush indexes every message of the folder not yet indexed and returns
// when done (tests, and the reindex command).
func (x *Index) Flush(name string) error {
	return x.do(name, func(b *box) error {
		if b == nil {
			return nil
		}
		if _, err := x.reconcile(b, true, false); err != nil {
			return err
		}
		return x.catchUp(b)
	})
}

// summaryCols are the columns a Summary is read from, in scanSummary's
// order.
const summaryCols = "id, size, received, seen, indexed, date, hfrom, hto, subject, attach, loc, tags"

// scanSummary reads one row of summaryCols; a row not indexed yet gets
// its summary from its file.
func (x *Index) scanSummary(name string, rows interface{ Scan(...any) error }) (store.Summary, string, error) {
	var (
		s                store.Summary
		recv, date       int64
		indexed          int
		to, loc, tags    string
		seen, attachment bool
	)
	if err := rows.Scan(&s.ID, &s.Size, &recv, &seen, &indexed, &date, &s.From, &to, &s.Subject, &attachment, &loc, &tags); err != nil {
		return s, "", err
	}
	if tags != "" {
		s.Tags = strings.Split(strings.Trim(tags, "\n"), "\n")
	}
	s.Received, s.Seen, s.Attachments = time.Unix(0, recv), seen, attachment
	if date != 0 {
		s.Date = time.Unix(date, 0)
	}
	if to != "" {
		s.To = strings.Split(to, "\n")
	}
	if indexed == 0 {
		if rc, err := x.src.Open(name, loc, -1); err == nil {
			var fresh store.Summary
			if summarize(rc, &fresh, &x.dec) == nil {
				s.From, s.To, s.Subject, s.Date, s.Attachments = fresh.From, fresh.To, fresh.Subject, fresh.Date, fresh.Attachments
				s.Tags = fresh.Tags
			}
			rc.Close()
		}
	}
	return s, loc, nil
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

// checkName checks a mailbox name as every Browser method does.
func checkName(mailbox string) error {
	if !store.ValidMailboxName(mailbox) {
		return store.ErrBadMailbox
	}
	return nil
}

// Mailbox implements store.Browser.
func (x *Index) Mailbox(mailbox string) (store.MailboxInfo, error) {
	info := store.MailboxInfo{Name: mailbox}
	if err := checkName(mailbox); err != nil {
		return info, err
	}
	err := x.do(mailbox, func(b *box) error {
		if b == nil {
			return nil
		}
		if _, err := x.reconcile(b, false, false); err != nil {
			return err
		}
		return b.db.QueryRow("SELECT count(*), coalesce(sum(size), 0), coalesce(sum(seen = 0), 0) FROM msgs").
			Scan(&info.Messages, &info.Size, &info.Unseen)
	})
	if err != nil {
		return info, fmt.Errorf("index %s: %w", mailbox, err)
	}
	return info, nil
}

// Get implements store.Browser.
func (x *Index) Get(mailbox, id string) (store.Summary, error) {
	s, _, err := x.find(mailbox, id)
	return s, err
}

// find returns the summary and location of message id, reconciling once
// when the index does not know it or its file is not where the index
// says.
func (x *Index) find(mailbox, id string) (store.Summary, string, error) {
	var (
		s   store.Summary
		loc string
	)
	if err := checkName(mailbox); err != nil {
		return s, "", err
	}
	if !store.ValidID(id) {
		return s, "", fmt.Errorf("message %q: %w", id, store.ErrNotFound)
	}
	err := x.do(mailbox, func(b *box) error {
		if b == nil {
			return store.ErrNotFound
		}
		if _, err := x.reconcile(b, false, false); err != nil {
			return err
		}
		for try := 0; ; try++ {
			row := b.db.QueryRow("SELECT "+summaryCols+" FROM msgs WHERE id = ? ORDER BY rowid LIMIT 1", id)
			var err error
			s, loc, err = x.scanSummary(mailbox, row)
			if err == nil {
				if there, err := x.src.Exists(mailbox, loc); err != nil {
					return err
				} else if there {
					return nil
				}
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if try > 0 {
				return store.ErrNotFound
			}
			if _, err := x.reconcile(b, true, true); err != nil {
				return err
			}
		}
	})
	if errors.Is(err, store.ErrNotFound) {
		return s, "", fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return s, "", fmt.Errorf("index %s: %w", mailbox, err)
	}
	return s, loc, nil
}

// List implements store.Browser from the index: header, date, size and
// flag conditions in SQL, words through the full-text index (word-prefix
// matching, case- and accent-insensitive). A query with words first
// indexes what is not indexed yet, so that nothing is missed.
func (x *Index) List(mailbox string, q store.Query, offset, limit int) (store.ListResult, error) {
	var res store.ListResult
	if err := checkName(mailbox); err != nil {
		return res, err
	}
	where, args := sqlWhere(q)
	err := x.do(mailbox, func(b *box) error {
		res = store.ListResult{}
		if b == nil {
			return nil
		}
		if _, err := x.reconcile(b, false, false); err != nil {
			return err
		}
		if needsIndexed(q) {
			if err := x.catchUp(b); err != nil {
				return err
			}
		}
		page := "SELECT " + summaryCols + " FROM msgs" + where + " ORDER BY rowid DESC LIMIT ? OFFSET ?"
		count := "SELECT count(*) FROM msgs" + where
		if m := ftsMatch(q); m != "" && len(args) == 1 {
			// Words only: count and page straight from the full-text
			// index, which yields matches by rowid (newest first), so a
			// word found in every message costs a page, not a sort.
			count = "SELECT count(*) FROM fts WHERE fts MATCH ?"
			page = "SELECT " + summaryCols + " FROM msgs WHERE rowid IN (SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid DESC LIMIT ? OFFSET ?) ORDER BY rowid DESC"
		}
		if err := b.db.QueryRow(count, args...).Scan(&res.Total); err != nil {
			return err
		}
		if offset >= res.Total || limit <= 0 {
			return nil
		}
		rows, err := b.db.Query(page, append(args, limit, offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			s, _, err := x.scanSummary(mailbox, rows)
			if err != nil {
				return err
			}
			res.Messages = append(res.Messages, s)
		}
		return rows.Err()
	})
	if err != nil {
		return res, fmt.Errorf("index %s: %w", mailbox, err)
	}
	return res, nil
}

// SearchIDs returns the ids of the messages of a folder matching q (every
// condition; words by the full-text index): IMAP SEARCH's text keys.
func (x *Index) SearchIDs(mailbox, folder string, q store.Query) (map[string]bool, error) {
	out := map[string]bool{}
	where, args := sqlWhere(q)
	err := x.do(BoxName(mailbox, folder), func(b *box) error {
		clear(out)
		if b == nil {
			return nil
		}
		if _, err := x.reconcile(b, true, false); err != nil {
			return err
		}
		if err := x.catchUp(b); err != nil {
			return err
		}
		rows, err := b.db.Query("SELECT id FROM msgs"+where, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out[id] = true
		}
		return rows.Err()
	})
	return out, err
}

// needsIndexed reports whether q looks at what only indexed rows have.
func needsIndexed(q store.Query) bool {
	return len(q.Words)+len(q.From)+len(q.To)+len(q.Subject)+len(q.Text)+len(q.Tags) > 0 || q.Attachments != nil
}

// sqlWhere turns q into a WHERE clause over msgs (with its leading space,
// empty for a zero query) and its arguments.
func sqlWhere(q store.Query) (string, []any) {
	var conds []string
	var args []any
	if m := ftsMatch(q); m != "" {
		conds = append(conds, "rowid IN (SELECT rowid FROM fts WHERE fts MATCH ?)")
		args = append(args, m)
	}
	if !q.After.IsZero() {
		conds, args = append(conds, "received >= ?"), append(args, q.After.UnixNano())
	}
	if !q.Before.IsZero() {
		conds, args = append(conds, "received < ?"), append(args, q.Before.UnixNano())
	}
	if q.Larger > 0 {
		conds, args = append(conds, "size > ?"), append(args, q.Larger)
	}
	if q.Smaller > 0 {
		conds, args = append(conds, "size < ?"), append(args, q.Smaller)
	}
	if q.Seen != nil {
		conds, args = append(conds, "seen = ?"), append(args, *q.Seen)
	}
	if q.Attachments != nil {
		conds, args = append(conds, "attach = ?"), append(args, *q.Attachments)
	}
	for _, t := range q.Tags {
		// Exact: the tag between the newlines of the column.
		conds, args = append(conds, "instr(tags, ?) > 0"), append(args, "\n"+t+"\n")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// ftsMatch returns the FTS5 query of q's words: every term must match,
// each as a phrase whose last word is a prefix ("weekly rep" matches
// "weekly report"). The tokenizer splits a term as it split the text, so
// "alice@example.com" is the phrase alice example com. A term without a
// letter or digit constrains nothing.
func ftsMatch(q store.Query) string {
	var parts []string
	add := func(col string, terms []string) {
		for _, t := range terms {
			if !hasWordChar(t) {
				continue
			}
			p := `"` + strings.ReplaceAll(t, `"`, `""`) + `"*`
			if col != "" {
				p = col + " : " + p
			}
			parts = append(parts, p)
		}
	}
	add("", q.Words)
	add("hfrom", q.From)
	add("hto", q.To)
	add("subject", q.Subject)
	add("body", q.Text)
	return strings.Join(parts, " AND ")
}

func hasWordChar(s string) bool {
	for _, r := range s {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 0x7f {
			return true
		}
	}
	return false
}

// Open implements store.Browser.
func (x *Index) Open(mailbox, id string) (io.ReadCloser, store.Summary, error) {
	s, loc, err := x.find(mailbox, id)
	if err != nil {
		return nil, s, err
	}
	rc, err := x.src.Open(mailbox, loc, s.Size)
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.Summary{}, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, store.Summary{}, err
	}
	return rc, s, nil
}

// Delete implements store.Browser: the Source removes the messages under
// the maildrop lock (Source.Remove), for the duration of the call only.
func (x *Index) Delete(mailbox string, ids []string) ([]string, error) {
	var (
		msgs []Located
		errs []error
		seen = map[string]bool{}
	)
	for _, id := range ids {
		if !store.ValidID(id) || seen[id] {
			continue
		}
		seen[id] = true
		_, loc, err := x.find(mailbox, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if errors.Is(err, store.ErrBadMailbox) {
			return nil, err
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		msgs = append(msgs, Located{ID: id, Loc: loc})
	}
	removed, err := x.src.Remove(mailbox, msgs)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("delete in %s: %w", mailbox, err)
	}
	errs = append(errs, err)
	if len(removed) > 0 {
		if b := x.openedBox(mailbox); b != nil {
			b.mu.Lock()
			if b.db != nil {
				if err := deleteIDs(b.db, removed); err != nil {
					b.dirty.Store(true)
				}
			}
			b.mu.Unlock()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("delete in %s: %w", mailbox, err)
	}
	return removed, nil
}

// SetSeen implements store.Browser through Source.SetSeen. No lock is
// taken: POP3 sessions find a moved message by its key.
func (x *Index) SetSeen(mailbox, id string, seen bool) (store.Summary, error) {
	s, loc, err := x.find(mailbox, id)
	if err != nil {
		return s, err
	}
	newLoc, err := x.src.SetSeen(mailbox, id, loc, seen)
	if err != nil {
		return store.Summary{}, err
	}
	s.Seen = seen
	if b := x.openedBox(mailbox); b != nil {
		b.mu.Lock()
		if b.db != nil {
			if _, err := b.db.Exec("UPDATE msgs SET loc = ?, seen = ?, indexed = CASE indexed WHEN 2 THEN 0 ELSE indexed END WHERE loc = ?", newLoc, seen, loc); err != nil {
				b.dirty.Store(true)
			}
		}
		b.mu.Unlock()
	}
	return s, nil
}

// precomputedChunk bounds the ids of one Precomputed query.
const precomputedChunk = 500

// Precomputed returns what Options.Precompute gave for the messages of a
// folder named by ids, for those indexed; a message not indexed yet (or
// too large) is missing from the map, and the caller reads its file. A
// message's content never changes under its id, so what is kept is never
// stale. It starts indexing a folder changed behind the index's back.
func (x *Index) Precomputed(mailbox, folder string, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	err := x.do(BoxName(mailbox, folder), func(b *box) error {
		clear(out)
		if b == nil {
			return nil
		}
		if _, err := x.reconcile(b, false, false); err != nil {
			return err
		}
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), precomputedChunk)]
			ids = ids[len(chunk):]
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = id
			}
			rows, err := b.db.Query("SELECT id, fetch FROM msgs WHERE fetch IS NOT NULL AND id IN (?"+
				strings.Repeat(",?", len(chunk)-1)+")", args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				var data []byte
				if err := rows.Scan(&id, &data); err != nil {
					rows.Close()
					return err
				}
				out[id] = data
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

var _ store.Arrivals = (*Index)(nil)

// Arrival implements store.Arrivals. It reconciles the index with the
// Source exactly (a folder whose stamp changed is rescanned, as for
// POP3), so that every message whose delivery returned is a row; arrival
// order is the rowid order (the arrival time, ties in the order
// recorded). A query on what only indexed rows have first indexes the
// rows not indexed yet.
func (x *Index) Arrival(mailbox string, q store.Query, after string, newest bool) (store.Summary, bool, error) {
	var (
		s     store.Summary
		found bool
	)
	if err := checkName(mailbox); err != nil {
		return s, false, err
	}
	where, args := sqlWhere(q)
	err := x.do(mailbox, func(b *box) error {
		found = false
		if b == nil {
			if after != "" && !store.IsNewID(after) {
				return store.ErrNotFound
			}
			return nil
		}
		if _, err := x.reconcile(b, true, false); err != nil {
			return err
		}
		if needsIndexed(q) {
			if err := x.catchUp(b); err != nil {
				return err
			}
		}
		conds, cargs := where, args
		if after != "" {
			var rowid int64
			err := b.db.QueryRow("SELECT rowid FROM msgs WHERE id = ? ORDER BY rowid LIMIT 1", after).Scan(&rowid)
			cond := "rowid > ?"
			switch {
			case errors.Is(err, sql.ErrNoRows) && store.IsNewID(after):
				// Gone since (or never here): its id holds its arrival time.
				cond, rowid = "received > ?", store.IDTime(after)
			case errors.Is(err, sql.ErrNoRows):
				return store.ErrNotFound
			case err != nil:
				return err
			}
			if conds == "" {
				conds = " WHERE " + cond
			} else {
				conds += " AND " + cond
			}
			cargs = append(slices.Clip(cargs), rowid)
		}
		order := " ORDER BY rowid LIMIT 1"
		if newest {
			order = " ORDER BY rowid DESC LIMIT 1"
		}
		var err error
		s, _, err = x.scanSummary(mailbox, b.db.QueryRow("SELECT "+summaryCols+" FROM msgs"+conds+order, cargs...))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return s, false, fmt.Errorf("message %s: %w", after, store.ErrNotFound)
	}
	if err != nil {
		return s, false, fmt.Errorf("index %s: %w", mailbox, err)
	}
	return s, found, nil
}
