package shared

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
)

// DefaultLeaseTTL is Options.LeaseTTL when it is zero.
const DefaultLeaseTTL = 30 * time.Second

// leaseKeeper renews the maildrop leases this process holds, every
// LeaseTTL/3, so that they expire only when the node dies.
type leaseKeeper struct {
	mu   sync.Mutex
	held map[string]int64 // holder -> mailbox id
}

func (k *leaseKeeper) add(holder string, mbox int64) {
	k.mu.Lock()
	k.held[holder] = mbox
	k.mu.Unlock()
}

func (k *leaseKeeper) remove(holder string) {
	k.mu.Lock()
	delete(k.held, holder)
	k.mu.Unlock()
}

func (k *leaseKeeper) holders() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]string, 0, len(k.held))
	for h := range k.held {
		out = append(out, h)
	}
	return out
}

// renewLoop is the lease keeper's goroutine.
func (s *Store) renewLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		hs := s.leases.holders()
		if len(hs) == 0 {
			continue
		}
		ctx, cancel := s.call(s.ctx)
		start := time.Now()
		_, err := s.pool.Exec(ctx, `UPDATE maildrop_leases SET expires = now() + make_interval(secs => $2)
			WHERE holder = ANY($1) AND expires > now()`, hs, s.opts.LeaseTTL.Seconds())
		cancel()
		s.observe("pg", "renew", start, err)
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("shared: renewing maildrop leases", "err", err)
		}
	}
}

// releaseAll deletes the leases this process holds (Close).
func (s *Store) releaseAll() {
	hs := s.leases.holders()
	if len(hs) == 0 {
		return
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	_, err := s.pool.Exec(ctx, `DELETE FROM maildrop_leases WHERE holder = ANY($1)`, hs)
	s.observe("pg", "release", start, err)
	for _, h := range hs {
		s.leases.remove(h)
	}
}

// maildropLocked reports whether a POP3 session of any node holds the
// maildrop of mailbox id mbox (a lease not yet expired): INBOX's messages
// must not then be removed by anyone else (RFC 1939 §8), so web deletes,
// IMAP expunges and moves out of INBOX, and retention fail with
// store.ErrLocked. Call it inside the transaction that removes, after
// locking the INBOX folder row (SELECT ... FOR UPDATE), so that a lease
// taken meanwhile waits for the removal to commit.
func (s *Store) maildropLocked(ctx context.Context, q querier, mbox int64) (bool, error) {
	var held bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM maildrop_leases WHERE mailbox_id = $1 AND expires > now())`, mbox).Scan(&held)
	return held, err
}

// dropMsg is one message of a maildrop snapshot.
type dropMsg struct {
	store.MessageInfo
	key      string
	wire     bool
	blobSize int64
	received time.Time
}

// maildrop is a POP3 maildrop: a lease and a snapshot of INBOX.
type maildrop struct {
	s      *Store
	name   string
	mbox   int64
	fid    int64
	holder string
	msgs   []dropMsg
	infos  []store.MessageInfo

	mu     sync.Mutex
	closed bool
}

// OpenMaildrop implements store.MaildropOpener: it takes the mailbox's
// lease, shared by every node (RFC 1939 §8: the maildrop is locked for
// the session), and snapshots INBOX in uid order. Another session of any
// node holding an unexpired lease is store.ErrLocked. A mailbox that
// does not exist is created, empty.
func (s *Store) OpenMaildrop(mailbox string) (store.Maildrop, error) {
	md, err := s.openMaildrop(mailbox, `uid`)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return md, nil
}

// openMaildrop is OpenMaildrop with the snapshot in order.
func (s *Store) openMaildrop(mailbox, order string) (*maildrop, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	mb, err := s.mailboxID(ctx, mailbox, true)
	if err != nil {
		return nil, fmt.Errorf("shared: open maildrop %s: %w", mailbox, err)
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	md := &maildrop{s: s, name: mailbox, mbox: mb, holder: s.node + "/" + hex.EncodeToString(tok[:])}
	start := time.Now()
	locked := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT id FROM folders WHERE mailbox_id = $1 AND name = $2 FOR UPDATE`,
			mb, store.Inbox).Scan(&md.fid); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO maildrop_leases (mailbox_id, holder, expires)
			VALUES ($1, $2, now() + make_interval(secs => $3))
			ON CONFLICT (mailbox_id) DO UPDATE SET holder = excluded.holder, acquired = now(), expires = excluded.expires
			WHERE maildrop_leases.expires <= now()`, mb, md.holder, s.opts.LeaseTTL.Seconds())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			locked = true
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT id, size, blob_key, wire, blob_size, received FROM messages
			WHERE folder_id = $1 ORDER BY `+order, md.fid)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m dropMsg
			if err := rows.Scan(&m.ID, &m.Size, &m.key, &m.wire, &m.blobSize, &m.received); err != nil {
				return err
			}
			md.msgs = append(md.msgs, m)
		}
		return rows.Err()
	})
	s.observe("pg", "lease", start, err)
	if err != nil {
		return nil, unavailable("open maildrop "+mailbox, err)
	}
	if locked {
		return nil, fmt.Errorf("shared: maildrop %s: %w", mailbox, store.ErrLocked)
	}
	s.leases.add(md.holder, mb)
	md.infos = make([]store.MessageInfo, len(md.msgs))
	for i, m := range md.msgs {
		md.infos[i] = m.MessageInfo
	}
	return md, nil
}

// Messages implements store.Maildrop.
func (md *maildrop) Messages() []store.MessageInfo { return md.infos }

func (md *maildrop) check(i int) error {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return errors.New("shared: maildrop closed")
	}
	if i < 0 || i >= len(md.msgs) {
		return fmt.Errorf("shared: maildrop %s: no message %d: %w", md.name, i, store.ErrNotFound)
	}
	return nil
}

// Open implements store.Maildrop: the message streamed from S3.
func (md *maildrop) Open(i int) (io.ReadCloser, error) {
	if err := md.check(i); err != nil {
		return nil, err
	}
	m := md.msgs[i]
	return md.s.openBlob(context.Background(), m.key, m.wire, m.blobSize, 0, -1)
}

// errLeaseLost: the maildrop's lease expired and was taken (the node
// could not renew it): nothing is removed.
var errLeaseLost = fmt.Errorf("shared: the maildrop lease was lost: %w", store.ErrLocked)

// Commit implements store.Maildrop: the rows go in one transaction,
// while the lease is still this session's; the blobs left without a row
// are then deleted (best effort: the sweeper removes what is left).
func (md *maildrop) Commit(indexes []int) error {
	md.mu.Lock()
	closed := md.closed
	md.mu.Unlock()
	if closed {
		return errors.New("shared: maildrop closed")
	}
	var ids []string
	for _, i := range indexes {
		if i < 0 || i >= len(md.msgs) {
			return fmt.Errorf("shared: maildrop %s: no message %d", md.name, i)
		}
		ids = append(ids, md.msgs[i].ID)
	}
	if len(ids) == 0 {
		return nil
	}
	s := md.s
	gone, keys, err := s.removeMessages(md.mbox, md.fid, md.name, ids, md.holder)
	if err != nil {
		return err
	}
	s.hub.Publish(store.Event{Kind: store.EventDeleted, Mailbox: md.name, IDs: gone})
	s.collect(keys)
	return nil
}

// removeMessages deletes the messages ids of INBOX fid in one
// transaction: with holder, only while that lease is still held; without
// (""), only while no lease is. It returns the ids removed and their
// blob keys.
func (s *Store) removeMessages(mbox, fid int64, name string, ids []string, holder string) (gone, keys []string, err error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	lost := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM folders WHERE id = $1 FOR UPDATE`, fid); err != nil {
			return err
		}
		var ok bool
		if holder != "" {
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM maildrop_leases
				WHERE mailbox_id = $1 AND holder = $2 AND expires > now())`, mbox, holder).Scan(&ok); err != nil {
				return err
			}
		} else {
			held, err := s.maildropLocked(ctx, tx, mbox)
			if err != nil {
				return err
			}
			ok = !held
		}
		if !ok {
			lost = true
			return nil
		}
		rows, err := tx.Query(ctx, `DELETE FROM messages WHERE folder_id = $1 AND id = ANY($2) RETURNING id, blob_key`, fid, ids)
		if err != nil {
			return err
		}
		if gone, keys, err = removedRows(rows); err != nil {
			return err
		}
		if len(gone) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = $1`, fid); err != nil {
			return err
		}
		return s.notifyTx(ctx, tx, store.Event{Kind: store.EventDeleted, Mailbox: name, IDs: gone})
	})
	s.observe("pg", "remove", start, err)
	if err != nil {
		return nil, nil, unavailable("remove from "+name, err)
	}
	if lost {
		if holder != "" {
			return nil, nil, errLeaseLost
		}
		return nil, nil, fmt.Errorf("shared: mailbox %s: %w", name, store.ErrLocked)
	}
	return gone, keys, nil
}

// collect deletes the blobs of keys that no message refers to any more:
// the row, then the object (a crash between leaves an orphan object the
// sweeper removes). Best effort.
func (s *Store) collect(keys []string) {
	for _, key := range keys {
		ctx, cancel := s.call(context.Background())
		start := time.Now()
		tag, err := s.pool.Exec(ctx, `DELETE FROM blobs WHERE key = $1
			AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_key = $1)`, key)
		cancel()
		s.observe("pg", "collect", start, err)
		if err != nil {
			s.log.Debug("shared: collecting a blob", "key", key, "err", err)
			continue
		}
		if tag.RowsAffected() == 1 {
			if err := s.deleteBlob(context.Background(), key); err != nil {
				s.log.Debug("shared: deleting an object", "key", key, "err", err)
			}
		}
	}
}

// MarkSeen implements store.Maildrop: \Seen with a new modseq.
func (md *maildrop) MarkSeen(i int) error {
	if err := md.check(i); err != nil {
		return err
	}
	s := md.s
	id := md.msgs[i].ID
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	changed, found := false, false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var flags []string
		err := tx.QueryRow(ctx, `SELECT flags FROM messages WHERE folder_id = $1 AND id = $2 FOR UPDATE`, md.fid, id).Scan(&flags)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		for _, f := range flags {
			if f == store.FlagSeen {
				return nil
			}
		}
		var modseq int64
		if err := tx.QueryRow(ctx, `UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = $1 RETURNING highestmodseq`, md.fid).Scan(&modseq); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE messages SET flags = array_append(flags, $3), modseq = $4
			WHERE folder_id = $1 AND id = $2`, md.fid, id, store.FlagSeen, modseq); err != nil {
			return err
		}
		changed = true
		return s.notifyTx(ctx, tx, store.Event{Kind: store.EventUpdated, Mailbox: md.name, IDs: []string{id}})
	})
	s.observe("pg", "seen", start, err)
	if err != nil {
		return unavailable("mark seen", err)
	}
	if !found {
		return fmt.Errorf("shared: message %s: %w", id, store.ErrNotFound)
	}
	if changed {
		s.hub.Publish(store.Event{Kind: store.EventUpdated, Mailbox: md.name, IDs: []string{id}})
	}
	return nil
}

// Close implements store.Maildrop: the lease row goes (if still ours).
func (md *maildrop) Close() error {
	md.mu.Lock()
	if md.closed {
		md.mu.Unlock()
		return nil
	}
	md.closed = true
	md.mu.Unlock()
	s := md.s
	s.leases.remove(md.holder)
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	_, err := s.pool.Exec(ctx, `DELETE FROM maildrop_leases WHERE mailbox_id = $1 AND holder = $2`, md.mbox, md.holder)
	s.observe("pg", "unlease", start, err)
	if err != nil {
		return unavailable("release maildrop "+md.name, err)
	}
	return nil
}
