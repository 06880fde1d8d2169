package shared

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
)

// An open IMAP folder (store.Folder): its row in folders and its rows in
// messages. Every change to a folder's messages advances the row's
// highestmodseq in the same transaction (insertMessages does for
// deliveries), so that Sync, reading that row, knows whether anything
// changed.

// MaxFolderKeywords is how many keywords a folder can define (the
// Maildir's file names hold 26).
const MaxFolderKeywords = 64

// canonicalSystem is the order of system flags in a message's Flags:
// the Maildir's (its info letters in ASCII order).
var canonicalSystem = []string{store.FlagDraft, store.FlagFlagged, store.FlagAnswered, store.FlagSeen, store.FlagDeleted}

// folder is an open folder.
type folder struct {
	s       *Store
	mailbox string
	inbox   bool
	// name is the folder's canonical name (store.Inbox or the folder's),
	// as the last Sync read it: a RENAME by any session changes it.
	name atomic.Pointer[string]
	mbox int64
	fid  int64
	ch   chan struct{}

	unsub, unrec func()

	mu     sync.Mutex
	state  *store.FolderState
	closed bool
}

var _ store.Folder = (*folder)(nil)

var errFolderClosed = errors.New("shared: folder closed")

// newFolder opens folder fid: its Changed channel is fed by the event hub
// (every node's changes, through LISTEN/NOTIFY) and by reconnections of
// the listener (notifications may have been lost).
func (s *Store) newFolder(mailbox string, mbox, fid int64, name string) *folder {
	fo := &folder{s: s, mailbox: mailbox, inbox: name == store.Inbox, mbox: mbox, fid: fid, ch: make(chan struct{}, 1)}
	fo.name.Store(&name)
	fo.unsub = s.hub.Subscribe(func(ev store.Event) {
		if ev.Mailbox == mailbox && ev.Folder == fo.evFolder() {
			fo.poke()
		}
	})
	fo.unrec = s.onReconnect(fo.poke)
	return fo
}

// poke tells Changed's receiver, without blocking.
func (fo *folder) poke() {
	select {
	case fo.ch <- struct{}{}:
	default:
	}
}

// Changed implements store.Folder.
func (fo *folder) Changed() <-chan struct{} { return fo.ch }

// Close implements store.Folder.
func (fo *folder) Close() error {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if fo.closed {
		return nil
	}
	fo.closed = true
	fo.unsub()
	fo.unrec()
	return nil
}

func (fo *folder) check() error {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if fo.closed {
		return errFolderClosed
	}
	return nil
}

// evFolder is the folder's Event.Folder.
func (fo *folder) evFolder() string { return eventFolder(fo.folderName()) }

// folderName is the folder's name as last known.
func (fo *folder) folderName() string { return *fo.name.Load() }

// canonicalFlags returns a message's flags: system flags in
// canonicalSystem's order, then its keywords in the folder's order
// (others, which should not be, after them).
func canonicalFlags(sys, kws, folderKw []string) []string {
	out := make([]string, 0, len(sys)+len(kws))
	for _, f := range canonicalSystem {
		if slices.Contains(sys, f) {
			out = append(out, f)
		}
	}
	var rest []string
	for _, k := range kws {
		if !slices.ContainsFunc(folderKw, func(f string) bool { return strings.EqualFold(f, k) }) {
			rest = append(rest, k)
		}
	}
	for _, f := range folderKw {
		if slices.ContainsFunc(kws, func(k string) bool { return strings.EqualFold(f, k) }) {
			out = append(out, f)
		}
	}
	return append(out, rest...)
}

// Sync implements store.Folder. When the folder's row says nothing
// changed (uidnext and highestmodseq as in the last state) it returns
// the same state; else it reads the listing in one repeatable-read
// transaction, so that it is one moment's.
func (fo *folder) Sync() (*store.FolderState, error) {
	if err := fo.check(); err != nil {
		return nil, err
	}
	s := fo.s
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	var uidnext, hms int64
	var name string
	err := s.pool.QueryRow(ctx, `SELECT uidnext, highestmodseq, name FROM folders WHERE id = $1`, fo.fid).Scan(&uidnext, &hms, &name)
	s.observe("pg", "sync", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("sync %s: %w", fo.folderName(), store.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable("sync "+fo.folderName(), err)
	}
	if name != fo.folderName() {
		fo.name.Store(&name)
	}
	fo.mu.Lock()
	st := fo.state
	fo.mu.Unlock()
	if st != nil && int64(st.UIDNext) == uidnext && int64(st.HighestModSeq) == hms {
		return st, nil
	}
	// Another Folder of this node on the same folder may have read it
	// already: share its state (100 sessions on one folder, one copy).
	if v, ok := s.states.Load(fo.fid); ok {
		if c := v.(*store.FolderState); int64(c.UIDNext) == uidnext && int64(c.HighestModSeq) == hms {
			fo.mu.Lock()
			fo.state = c
			fo.mu.Unlock()
			return c, nil
		}
	}
	start = time.Now()
	prev := st
	st = &store.FolderState{}
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var uv, next, hms int64
		var kws []string
		err := tx.QueryRow(ctx, `SELECT uidvalidity, uidnext, highestmodseq, keywords FROM folders WHERE id = $1`, fo.fid).Scan(&uv, &next, &hms, &kws)
		if err != nil {
			return err
		}
		st.UIDValidity, st.UIDNext, st.HighestModSeq = uint32(uv), uint32(min(next, 4294967295)), uint64(hms)
		st.Keywords, st.KeywordsFull = kws, len(kws) >= MaxFolderKeywords
		scan := func(r pgx.CollectableRow) (store.FolderMessage, error) {
			var m store.FolderMessage
			var uid, modseq int64
			var sys, kw []string
			err := r.Scan(&uid, &m.ID, &sys, &kw, &m.Size, &m.Received, &modseq)
			m.UID, m.ModSeq, m.Flags = uint32(uid), uint64(modseq), canonicalFlags(sys, kw, kws)
			return m, err
		}
		if prev != nil && prev.UIDValidity == st.UIDValidity {
			// Since prev: the UIDs still there, and the rows with a
			// larger modseq (every change gives one, under the folder's
			// row lock, so all of those up to hms are in this snapshot).
			if msgs, ok, err := syncSince(ctx, tx, fo.fid, prev, scan); err != nil || ok {
				st.Messages = msgs
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT uid, id, flags, keywords, size, received, modseq FROM messages
			WHERE folder_id = $1 ORDER BY uid`, fo.fid)
		if err != nil {
			return err
		}
		st.Messages, err = pgx.CollectRows(rows, scan)
		return err
	})
	s.observe("pg", "sync", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("sync %s: %w", fo.folderName(), store.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable("sync "+fo.folderName(), err)
	}
	fo.mu.Lock()
	fo.state = st
	fo.mu.Unlock()
	s.states.Store(fo.fid, st)
	return st, nil
}

// syncSince returns the listing from prev, the UIDs present now and the
// rows changed since prev (modseq above its HighestModSeq); false when
// they do not make a listing (then the caller reads it whole).
func syncSince(ctx context.Context, tx pgx.Tx, fid int64, prev *store.FolderState,
	scan pgx.RowToFunc[store.FolderMessage]) ([]store.FolderMessage, bool, error) {
	rows, err := tx.Query(ctx, `SELECT uid FROM messages WHERE folder_id = $1 ORDER BY uid`, fid)
	if err != nil {
		return nil, false, err
	}
	present, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, false, err
	}
	rows, err = tx.Query(ctx, `SELECT uid, id, flags, keywords, size, received, modseq FROM messages
		WHERE folder_id = $1 AND modseq > $2`, fid, int64(prev.HighestModSeq))
	if err != nil {
		return nil, false, err
	}
	changed, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, false, err
	}
	byUID := make(map[uint32]store.FolderMessage, len(changed))
	for _, m := range changed {
		byUID[m.UID] = m
	}
	out := make([]store.FolderMessage, 0, len(present))
	for _, u := range present {
		uid := uint32(u)
		if m, ok := byUID[uid]; ok {
			out = append(out, m)
			continue
		}
		i, ok := slices.BinarySearchFunc(prev.Messages, uid, func(m store.FolderMessage, uid uint32) int {
			return cmp.Compare(m.UID, uid)
		})
		if !ok {
			return nil, false, nil
		}
		out = append(out, prev.Messages[i])
	}
	return out, true, nil
}

// Open implements store.Folder: the message's blob as the protocols send
// it. store.ErrNotFound when the message (or its blob) is gone.
func (fo *folder) Open(uid uint32) (io.ReadCloser, error) {
	if err := fo.check(); err != nil {
		return nil, err
	}
	s := fo.s
	ctx, cancel := s.call(context.Background())
	start := time.Now()
	var key string
	var wire bool
	var blobSize int64
	err := s.pool.QueryRow(ctx, `SELECT blob_key, wire, blob_size FROM messages WHERE folder_id = $1 AND uid = $2`,
		fo.fid, int64(uid)).Scan(&key, &wire, &blobSize)
	cancel()
	s.observe("pg", "open", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("open uid %d: %w", uid, store.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable("open uid", err)
	}
	rc, err := s.openBlob(context.Background(), key, wire, blobSize, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("open uid %d: %w", uid, err)
	}
	return rc, nil
}

// uidArgs returns the arguments of "($n OR uid = ANY($n+1))": all when
// uids is nil (as the Maildir's selection).
func uidArgs(uids []uint32) (bool, []int64) {
	if uids == nil {
		return true, []int64{}
	}
	out := make([]int64, len(uids))
	for i, u := range uids {
		out[i] = int64(u)
	}
	return false, out
}

// defineKeywords returns the folder's keywords (have) with kws defined,
// kws in the folder's spelling (keywords compare case-insensitively, RFC
// 9051 §2.3.2), and whether the list grew. ErrTooManyKeywords when it
// would exceed MaxFolderKeywords.
func defineKeywords(have, kws []string) (all, spelled []string, grew bool, err error) {
	all = slices.Clone(have)
	for _, k := range kws {
		i := slices.IndexFunc(all, func(f string) bool { return strings.EqualFold(f, k) })
		if i < 0 {
			if len(all) >= MaxFolderKeywords {
				return nil, nil, false, store.ErrTooManyKeywords
			}
			all = append(all, k)
			grew = true
			i = len(all) - 1
		}
		if !slices.Contains(spelled, all[i]) {
			spelled = append(spelled, all[i])
		}
	}
	return all, spelled, grew, nil
}

// lockFolder locks folder fid's row in tx and returns its keywords;
// store.ErrNotFound when it is gone.
func lockFolder(ctx context.Context, tx pgx.Tx, fid int64) ([]string, error) {
	var kws []string
	err := tx.QueryRow(ctx, `SELECT keywords FROM folders WHERE id = $1 FOR UPDATE`, fid).Scan(&kws)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return kws, err
}

// SetFlags implements store.Folder, in one transaction under the
// folder's row lock: the changed messages get the folder's next modseq
// (RFC 7162 §3.1.3), and new keywords are defined in the folder.
func (fo *folder) SetFlags(uids []uint32, op store.FlagOp, flags []string) ([]store.FolderMessage, error) {
	if err := fo.check(); err != nil {
		return nil, err
	}
	if uids != nil && len(uids) == 0 {
		return nil, nil
	}
	s := fo.s
	sys, kws := flagSets(flags)
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	all, list := uidArgs(uids)
	var out []store.FolderMessage
	var ids []string
	var answer error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out, ids, answer = nil, nil, nil
		have, err := lockFolder(ctx, tx, fo.fid)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				answer = err
				return nil
			}
			return err
		}
		folderKw, spelled, grew := have, kws, false
		if op != store.FlagsRemove {
			folderKw, spelled, grew, err = defineKeywords(have, kws)
			if err != nil {
				answer = err
				return nil
			}
		}
		rows, err := tx.Query(ctx, `SELECT uid, id, flags, keywords, size, received, modseq FROM messages
			WHERE folder_id = $1 AND ($2 OR uid = ANY($3)) ORDER BY uid FOR UPDATE`, fo.fid, all, list)
		if err != nil {
			return err
		}
		type msg struct {
			m       store.FolderMessage
			sys, kw []string
			changed bool
		}
		msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (msg, error) {
			var x msg
			var uid, modseq int64
			err := r.Scan(&uid, &x.m.ID, &x.sys, &x.kw, &x.m.Size, &x.m.Received, &modseq)
			x.m.UID, x.m.ModSeq = uint32(uid), uint64(modseq)
			return x, err
		})
		if err != nil {
			return err
		}
		for i := range msgs {
			x := &msgs[i]
			nsys, nkw := apply(op, x.sys, x.kw, sys, spelled)
			if !sameSet(nsys, x.sys, false) || !sameSet(nkw, x.kw, true) {
				x.sys, x.kw, x.changed = nsys, nkw, true
			}
		}
		changed := slices.ContainsFunc(msgs, func(x msg) bool { return x.changed })
		if changed || grew {
			var ms int64
			if err := tx.QueryRow(ctx, `UPDATE folders SET highestmodseq = highestmodseq + 1, keywords = $2
				WHERE id = $1 RETURNING highestmodseq`, fo.fid, folderKw).Scan(&ms); err != nil {
				return err
			}
			b := &pgx.Batch{}
			for i := range msgs {
				x := &msgs[i]
				if !x.changed {
					continue
				}
				x.m.ModSeq = uint64(ms)
				ids = append(ids, x.m.ID)
				b.Queue(`UPDATE messages SET flags = $3, keywords = $4, modseq = $5 WHERE folder_id = $1 AND uid = $2`,
					fo.fid, int64(x.m.UID), nonNil(x.sys), nonNil(x.kw), ms)
			}
			if b.Len() > 0 {
				if err := tx.SendBatch(ctx, b).Close(); err != nil {
					return err
				}
			}
		}
		for _, x := range msgs {
			x.m.Flags = canonicalFlags(x.sys, x.kw, folderKw)
			out = append(out, x.m)
		}
		if len(ids) > 0 {
			return s.notifyTx(ctx, tx, store.Event{Kind: store.EventUpdated, Mailbox: fo.mailbox, Folder: fo.evFolder(), IDs: ids})
		}
		return nil
	})
	s.observe("pg", "store flags", start, err)
	if err != nil {
		return nil, unavailable("store flags", err)
	}
	if answer != nil {
		return nil, fmt.Errorf("store flags: %w", answer)
	}
	if len(ids) > 0 {
		s.hub.Publish(store.Event{Kind: store.EventUpdated, Mailbox: fo.mailbox, Folder: fo.evFolder(), IDs: ids})
	}
	return out, nil
}

// flagSets splits flags into system flags and keywords, each once.
func flagSets(flags []string) (sys, kws []string) {
	sys, kws = systemFlags(flags)
	var ks []string
	for _, k := range kws {
		if !slices.ContainsFunc(ks, func(x string) bool { return strings.EqualFold(x, k) }) {
			ks = append(ks, k)
		}
	}
	slices.Sort(sys)
	return slices.Compact(sys), nonNil(ks)
}

// apply returns a message's system flags and keywords after op with sys
// and kws.
func apply(op store.FlagOp, curSys, curKw, sys, kws []string) ([]string, []string) {
	eq := func(a string) func(string) bool { return func(b string) bool { return strings.EqualFold(a, b) } }
	switch op {
	case store.FlagsSet:
		return slices.Clone(sys), slices.Clone(kws)
	case store.FlagsAdd:
		ns, nk := slices.Clone(curSys), slices.Clone(curKw)
		for _, f := range sys {
			if !slices.Contains(ns, f) {
				ns = append(ns, f)
			}
		}
		for _, k := range kws {
			if !slices.ContainsFunc(nk, eq(k)) {
				nk = append(nk, k)
			}
		}
		return ns, nk
	default:
		ns := slices.DeleteFunc(slices.Clone(curSys), func(f string) bool { return slices.Contains(sys, f) })
		nk := slices.DeleteFunc(slices.Clone(curKw), func(k string) bool { return slices.ContainsFunc(kws, eq(k)) })
		return ns, nk
	}
}

// sameSet reports whether a and b hold the same strings (case-insensitively
// when fold).
func sameSet(a, b []string, fold bool) bool {
	in := func(s string, l []string) bool {
		return slices.ContainsFunc(l, func(x string) bool { return s == x || fold && strings.EqualFold(s, x) })
	}
	for _, x := range a {
		if !in(x, b) {
			return false
		}
	}
	for _, x := range b {
		if !in(x, a) {
			return false
		}
	}
	return true
}

// Expunge implements store.Folder: one transaction under the folder's row
// lock removes the messages with \Deleted (RFC 9051 §6.4.3); for INBOX,
// nothing while a POP3 session of any node holds the maildrop
// (store.ErrLocked, RFC 1939 §8). Their blobs, unless other messages
// share them, are deleted after the commit, best effort.
func (fo *folder) Expunge(uids []uint32) ([]uint32, error) {
	if err := fo.check(); err != nil {
		return nil, err
	}
	if uids != nil && len(uids) == 0 {
		return nil, nil
	}
	s := fo.s
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	all, list := uidArgs(uids)
	var gone []uint32
	var ids, keys []string
	var answer error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		gone, ids, keys, answer = nil, nil, nil, nil
		if _, err := lockFolder(ctx, tx, fo.fid); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				answer = err
				return nil
			}
			return err
		}
		if fo.inbox {
			held, err := s.maildropLocked(ctx, tx, fo.mbox)
			if err != nil {
				return err
			}
			if held {
				answer = store.ErrLocked
				return nil
			}
		}
		rows, err := tx.Query(ctx, `DELETE FROM messages WHERE folder_id = $1 AND '\Deleted' = ANY(flags)
			AND ($2 OR uid = ANY($3)) RETURNING uid, id, blob_key`, fo.fid, all, list)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for rows.Next() {
			var uid int64
			var id, key string
			if err := rows.Scan(&uid, &id, &key); err != nil {
				rows.Close()
				return err
			}
			gone = append(gone, uint32(uid))
			ids = append(ids, id)
			if !seen[key] {
				seen[key] = true
				keys = append(keys, key)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(gone) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = $1`, fo.fid); err != nil {
			return err
		}
		return s.notifyTx(ctx, tx, store.Event{Kind: store.EventDeleted, Mailbox: fo.mailbox, Folder: fo.evFolder(), IDs: ids})
	})
	s.observe("pg", "expunge", start, err)
	if err != nil {
		return nil, unavailable("expunge", err)
	}
	if answer != nil {
		return nil, fmt.Errorf("expunge %s: %w", fo.folderName(), answer)
	}
	if len(ids) > 0 {
		s.hub.Publish(store.Event{Kind: store.EventDeleted, Mailbox: fo.mailbox, Folder: fo.evFolder(), IDs: ids})
	}
	s.collect(keys)
	slices.Sort(gone)
	return gone, nil
}

// Copy implements store.Folder: new rows in dest sharing the blobs, flags
// and internal date kept (RFC 9051 §6.4.7: they SHOULD be preserved),
// with UIDs from dest's uidnext (never reused, RFC 9051 §2.3.1.1), in one
// transaction. A copy gets a new id (ids are unique in a
// mailbox; the Maildir too gives a copy a fresh id where the name is
// taken).
func (fo *folder) Copy(uids []uint32, dest string) (*store.CopyResult, error) {
	return fo.transfer(uids, dest, false)
}

// Move implements store.Folder (RFC 6851 §3.3: as COPY then the removal of
// the sources, atomically here): the rows change folder and get UIDs of
// dest in one transaction; a message keeps its id. For INBOX,
// store.ErrLocked (nothing moved) while a POP3 session holds the
// maildrop.
func (fo *folder) Move(uids []uint32, dest string) (*store.CopyResult, error) {
	return fo.transfer(uids, dest, true)
}

// transfer is Copy, or Move when move.
func (fo *folder) transfer(uids []uint32, dest string, move bool) (*store.CopyResult, error) {
	if err := fo.check(); err != nil {
		return nil, err
	}
	what := "copy"
	if move {
		what = "move"
	}
	df, err := parseFolder(dest)
	if err != nil {
		return nil, fmt.Errorf("%s to %q: %w", what, dest, err)
	}
	s := fo.s
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	var dfid int64
	err = s.pool.QueryRow(ctx, `SELECT id FROM folders WHERE mailbox_id = $1 AND name = $2`, fo.mbox, df).Scan(&dfid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s to %s: %w", what, dest, store.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(what, err)
	}
	if uids != nil && len(uids) == 0 {
		var uv int64
		if err := s.pool.QueryRow(ctx, `SELECT uidvalidity FROM folders WHERE id = $1`, dfid).Scan(&uv); err != nil {
			return nil, unavailable(what, err)
		}
		return &store.CopyResult{UIDValidity: uint32(uv)}, nil
	}
	all, list := uidArgs(uids)
	var res *store.CopyResult
	var evs []store.Event
	var answer error
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res, evs, answer = nil, nil, nil
		// Both rows locked in id order: transfers both ways do not
		// deadlock.
		rows, err := tx.Query(ctx, `SELECT id FROM folders WHERE id = ANY($1) ORDER BY id FOR UPDATE`, []int64{fo.fid, dfid})
		if err != nil {
			return err
		}
		locked, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if !slices.Contains(locked, fo.fid) || !slices.Contains(locked, dfid) {
			answer = store.ErrNotFound
			return nil
		}
		if move && fo.inbox {
			held, err := s.maildropLocked(ctx, tx, fo.mbox)
			if err != nil {
				return err
			}
			if held {
				answer = store.ErrLocked
				return nil
			}
		}
		type src struct {
			uid  int64
			id   string
			kw   []string
			size int64
		}
		rows, err = tx.Query(ctx, `SELECT uid, id, keywords, size FROM messages
			WHERE folder_id = $1 AND ($2 OR uid = ANY($3)) ORDER BY uid`, fo.fid, all, list)
		if err != nil {
			return err
		}
		srcs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (src, error) {
			var x src
			err := r.Scan(&x.uid, &x.id, &x.kw, &x.size)
			return x, err
		})
		if err != nil {
			return err
		}
		var have []string
		var uv int64
		if err := tx.QueryRow(ctx, `SELECT keywords, uidvalidity FROM folders WHERE id = $1`, dfid).Scan(&have, &uv); err != nil {
			return err
		}
		res = &store.CopyResult{UIDValidity: uint32(uv)}
		if len(srcs) == 0 {
			return nil
		}
		var kws []string
		for _, x := range srcs {
			kws = append(kws, x.kw...)
		}
		folderKw, _, _, err := defineKeywords(have, kws)
		if err != nil {
			answer = err
			return nil
		}
		n := int64(len(srcs))
		var next, ms int64
		if err := tx.QueryRow(ctx, `UPDATE folders SET uidnext = uidnext + $2, highestmodseq = highestmodseq + 1,
			keywords = $3 WHERE id = $1 RETURNING uidnext - $2, highestmodseq`, dfid, n, folderKw).Scan(&next, &ms); err != nil {
			return err
		}
		if next+n-1 > 4294967295 {
			return fmt.Errorf("shared: folder %s has no UIDs left", df)
		}
		b := &pgx.Batch{}
		var moved []string
		for i, x := range srcs {
			uid := next + int64(i)
			res.Source = append(res.Source, uint32(x.uid))
			res.Dest = append(res.Dest, uint32(uid))
			id := x.id
			if move {
				b.Queue(`UPDATE messages SET folder_id = $3, uid = $4, modseq = $5 WHERE folder_id = $1 AND uid = $2`,
					fo.fid, x.uid, dfid, uid, ms)
				moved = append(moved, id)
			} else {
				id = store.NewID()
				b.Queue(`INSERT INTO messages (mailbox_id, id, folder_id, uid, modseq, flags, keywords, size,
					received, header_date, from_addr, to_addrs, subject, attachments, tags, blob_key,
					wire, blob_size, fetch_data, fts)
					SELECT mailbox_id, $3, $4, $5, $6, flags, keywords, size,
					received, header_date, from_addr, to_addrs, subject, attachments, tags, blob_key,
					wire, blob_size, fetch_data, fts FROM messages WHERE folder_id = $1 AND uid = $2`,
					fo.fid, x.uid, id, dfid, uid, ms)
			}
			evs = append(evs, store.Event{Kind: store.EventArrived, Mailbox: fo.mailbox, Folder: eventFolder(df), IDs: []string{id}, Size: x.size})
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if move {
			if dfid != fo.fid {
				if _, err := tx.Exec(ctx, `UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = $1`, fo.fid); err != nil {
					return err
				}
			}
			evs = append([]store.Event{{Kind: store.EventDeleted, Mailbox: fo.mailbox, Folder: fo.evFolder(), IDs: moved}}, evs...)
		}
		return s.notifyAllTx(ctx, tx, evs)
	})
	s.observe("pg", what, start, err)
	if err != nil {
		return nil, unavailable(what+" to "+dest, err)
	}
	if answer != nil {
		return nil, fmt.Errorf("%s to %s: %w", what, dest, answer)
	}
	for _, ev := range evs {
		s.hub.Publish(ev)
	}
	return res, nil
}

// Append implements store.Folder: the message, its line ends made CRLF
// as the Maildir's Append and Deliver do (maildir.WireReader), streamed
// into a new object, then one transaction records the blob and the row
// with the folder's next UID. Nothing is visible before that commits.
func (fo *folder) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	if err := fo.check(); err != nil {
		return 0, err
	}
	s := fo.s
	sys, kws := flagSets(flags)
	id := store.NewID()
	h := &head{max: store.MaxSearchBytes}
	re := &readErr{r: r}
	body := io.TeeReader(maildir.WireReader(re, 0), h)
	pctx, pcancel := context.WithTimeout(context.Background(), s.opts.Timeout*30)
	key, size, err := s.putBlob(pctx, id, body)
	pcancel()
	if re.err != nil {
		if err == nil {
			_ = s.deleteBlob(context.Background(), key)
		}
		return 0, fmt.Errorf("append: reading the message: %w", re.err)
	}
	if err != nil {
		return 0, unavailable("append: store the message", err)
	}
	precompute := s.opts.Precompute
	if h.n > int64(len(h.buf)) {
		precompute = nil
	}
	desc, err := index.Describe(h.buf, precompute)
	if err != nil {
		desc = index.Description{}
	}
	if date.IsZero() {
		date = time.Now()
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	var uid uint32
	var answer error
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		answer = nil
		have, err := lockFolder(ctx, tx, fo.fid)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				answer = err
				return nil
			}
			return err
		}
		folderKw, spelled, grew, err := defineKeywords(have, kws)
		if err != nil {
			answer = err
			return nil
		}
		if grew {
			if _, err := tx.Exec(ctx, `UPDATE folders SET keywords = $2 WHERE id = $1`, fo.fid, folderKw); err != nil {
				return err
			}
		}
		if err := insertBlob(ctx, tx, key, size); err != nil {
			return err
		}
		uids, _, err := insertMessages(ctx, tx, fo.mbox, fo.fid, []newMessage{{
			ID: id, Flags: sys, Keywords: spelled, Size: size, BlobSize: size, Wire: true,
			Received: date, BlobKey: key, Desc: desc,
		}})
		if err != nil {
			return err
		}
		uid = uids[0]
		return s.notifyTx(ctx, tx, store.Event{Kind: store.EventArrived, Mailbox: fo.mailbox, Folder: fo.evFolder(), IDs: []string{id}, Size: size})
	})
	s.observe("pg", "append", start, err)
	if err != nil || answer != nil {
		_ = s.deleteBlob(context.Background(), key)
	}
	if err != nil {
		return 0, unavailable("append", err)
	}
	if answer != nil {
		return 0, fmt.Errorf("append: %w", answer)
	}
	s.hub.Publish(store.Event{Kind: store.EventArrived, Mailbox: fo.mailbox, Folder: fo.evFolder(), IDs: []string{id}, Size: size})
	return uid, nil
}
