package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
)

// The web inbox's view (store.Browser, store.Arrivals) and what IMAP asks
// of an index (SearchIDs, Precomputed), answered from the messages table:
// the summary columns, the fts column for text conditions. The web inbox
// shows INBOX.

// Browser is the shared store seen as a store.Browser and
// store.Arrivals (Store.Browser returns it): a type of its own because
// store.Admin and store.Browser both have a Mailboxes and a List.
type Browser struct{ *Store }

// Browser returns the web inbox's view of the store.
func (s *Store) Browser() *Browser { return &Browser{s} }

// Close does nothing: the Store is closed by its owner.
func (s *Browser) Close() {}

// Compile-time checks: the shared store is a whole store, its Browser a
// browser with arrivals.
var (
	_ store.Store    = (*Store)(nil)
	_ store.Browser  = (*Browser)(nil)
	_ store.Arrivals = (*Browser)(nil)
)

// summaryCols are the columns scanSummary reads, in its order.
const summaryCols = `m.id, m.from_addr, m.to_addrs, m.subject, m.header_date, m.received, m.size,
	m.attachments, m.flags @> ARRAY['\Seen'], m.tags`

func scanSummary(row pgx.Row) (store.Summary, error) {
	var s store.Summary
	var hdate *time.Time
	err := row.Scan(&s.ID, &s.From, &s.To, &s.Subject, &hdate, &s.Received, &s.Size, &s.Attachments, &s.Seen, &s.Tags)
	if hdate != nil {
		s.Date = *hdate
	}
	if len(s.To) == 0 {
		s.To = nil
	}
	if len(s.Tags) == 0 {
		s.Tags = nil
	}
	return s, err
}

// folderOf returns the mailbox id and the folder id of folder ("" or any
// case of INBOX: INBOX) of mailbox, or ErrNotFound.
func (s *Store) folderOf(ctx context.Context, mailbox, folder string) (int64, int64, error) {
	mbox, err := s.mailboxID(ctx, mailbox, false)
	if err != nil {
		return 0, 0, err
	}
	if folder == "" || strings.EqualFold(folder, store.Inbox) {
		folder = store.Inbox
	}
	var fid int64
	err = s.pool.QueryRow(ctx, `SELECT id FROM folders WHERE mailbox_id = $1 AND name = $2`, mbox, folder).Scan(&fid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, store.ErrNotFound
	}
	if err != nil {
		return 0, 0, unavailable("folder", err)
	}
	return mbox, fid, nil
}

// Mailboxes implements store.Browser: every mailbox with the counts of
// its INBOX.
func (s *Browser) Mailboxes() ([]store.MailboxInfo, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT b.name, count(m.id), count(m.id) FILTER (WHERE NOT m.flags @> ARRAY['\Seen']),
		coalesce(sum(m.size), 0)
		FROM mailboxes b JOIN folders f ON f.mailbox_id = b.id AND f.name = 'INBOX'
		LEFT JOIN messages m ON m.folder_id = f.id
		GROUP BY b.name ORDER BY b.name`)
	if err != nil {
		s.observe("pg", "mailboxes", start, err)
		return nil, unavailable("mailboxes", err)
	}
	var out []store.MailboxInfo
	for rows.Next() {
		var mi store.MailboxInfo
		if err := rows.Scan(&mi.Name, &mi.Messages, &mi.Unseen, &mi.Size); err != nil {
			rows.Close()
			return nil, unavailable("mailboxes", err)
		}
		out = append(out, mi)
	}
	rows.Close()
	err = rows.Err()
	s.observe("pg", "mailboxes", start, err)
	return out, unavailable("mailboxes", err)
}

// Mailbox implements store.Browser.
func (s *Browser) Mailbox(mailbox string) (store.MailboxInfo, error) {
	mi := store.MailboxInfo{Name: mailbox}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	_, fid, err := s.folderOf(ctx, mailbox, "")
	if errors.Is(err, store.ErrNotFound) {
		return mi, nil
	}
	if err != nil {
		return mi, err
	}
	start := time.Now()
	err = s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT flags @> ARRAY['\Seen']),
		coalesce(sum(size), 0) FROM messages WHERE folder_id = $1`, fid).Scan(&mi.Messages, &mi.Unseen, &mi.Size)
	s.observe("pg", "mailbox", start, err)
	return mi, unavailable("mailbox", err)
}

// Get implements store.Browser.
func (s *Browser) Get(mailbox, id string) (store.Summary, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	sum, _, err := s.get(ctx, mailbox, id)
	return sum, err
}

// blobRef is where a message's content is.
type blobRef struct {
	key            string
	wire           bool
	blobSize, size int64
}

func (s *Store) get(ctx context.Context, mailbox, id string) (store.Summary, blobRef, error) {
	var ref blobRef
	_, fid, err := s.folderOf(ctx, mailbox, "")
	if err != nil {
		return store.Summary{}, ref, notFound(mailbox, id, err)
	}
	start := time.Now()
	row := s.pool.QueryRow(ctx, `SELECT `+summaryCols+`, m.blob_key, m.wire, m.blob_size
		FROM messages m WHERE m.folder_id = $1 AND m.id = $2`, fid, id)
	var sum store.Summary
	var hdate *time.Time
	err = row.Scan(&sum.ID, &sum.From, &sum.To, &sum.Subject, &hdate, &sum.Received, &sum.Size,
		&sum.Attachments, &sum.Seen, &sum.Tags, &ref.key, &ref.wire, &ref.blobSize)
	s.observe("pg", "get", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return sum, ref, notFound(mailbox, id, store.ErrNotFound)
	}
	if err != nil {
		return sum, ref, unavailable("get", err)
	}
	if hdate != nil {
		sum.Date = *hdate
	}
	if len(sum.To) == 0 {
		sum.To = nil
	}
	if len(sum.Tags) == 0 {
		sum.Tags = nil
	}
	ref.size = sum.Size
	return sum, ref, nil
}

func notFound(mailbox, id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("shared: message %s of %s: %w", id, mailbox, store.ErrNotFound)
	}
	return err
}

// List implements store.Browser: newest first (the reverse of the order
// the store recorded the messages in, as the Maildir's index).
func (s *Browser) List(mailbox string, q store.Query, offset, limit int) (store.ListResult, error) {
	var res store.ListResult
	ctx, cancel := s.call(context.Background())
	defer cancel()
	_, fid, err := s.folderOf(ctx, mailbox, "")
	if errors.Is(err, store.ErrNotFound) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	where, args := queryWhere(q, fid)
	start := time.Now()
	defer func() { s.observe("pg", "list", start, err) }()
	if err = s.pool.QueryRow(ctx, `SELECT count(*) FROM messages m WHERE `+where, args...).Scan(&res.Total); err != nil {
		return res, unavailable("list", err)
	}
	if limit <= 0 || offset >= res.Total {
		return res, nil
	}
	n := len(args)
	rows, err := s.pool.Query(ctx, `SELECT `+summaryCols+` FROM messages m WHERE `+where+
		` ORDER BY m.arrival DESC LIMIT $`+strconv.Itoa(n+1)+` OFFSET $`+strconv.Itoa(n+2),
		append(args, limit, max(offset, 0))...)
	if err != nil {
		return res, unavailable("list", err)
	}
	defer rows.Close()
	for rows.Next() {
		sum, err := scanSummary(rows)
		if err != nil {
			return res, unavailable("list", err)
		}
		res.Messages = append(res.Messages, sum)
	}
	err = rows.Err()
	return res, unavailable("list", err)
}

// Open implements store.Browser.
func (s *Browser) Open(mailbox, id string) (io.ReadCloser, store.Summary, error) {
	ctx, cancel := s.call(context.Background())
	sum, ref, err := s.get(ctx, mailbox, id)
	cancel()
	if err != nil {
		return nil, sum, err
	}
	rc, err := s.openBlob(context.Background(), ref.key, ref.wire, ref.blobSize, 0, -1)
	return rc, sum, notFound(mailbox, id, err)
}

// Delete implements store.Browser: not while a POP3 session of any node
// holds the maildrop (store.ErrLocked, nothing removed).
func (s *Browser) Delete(mailbox string, ids []string) ([]string, error) {
	ctx, cancel := s.call(context.Background())
	mbox, fid, err := s.folderOf(ctx, mailbox, "")
	cancel()
	if errors.Is(err, store.ErrNotFound) || len(ids) == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	gone, keys, err := s.removeMessages(mbox, fid, mailbox, ids, "")
	if err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		s.hub.Publish(store.Event{Kind: store.EventDeleted, Mailbox: mailbox, IDs: gone})
		s.collect(keys)
	}
	return gone, nil
}

// SetSeen implements store.Browser.
func (s *Browser) SetSeen(mailbox, id string, seen bool) (store.Summary, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	_, fid, err := s.folderOf(ctx, mailbox, "")
	if err != nil {
		return store.Summary{}, notFound(mailbox, id, err)
	}
	start := time.Now()
	changed := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var was bool
		err := tx.QueryRow(ctx, `SELECT flags @> ARRAY['\Seen'] FROM messages WHERE folder_id = $1 AND id = $2 FOR UPDATE`, fid, id).Scan(&was)
		if err != nil {
			return err
		}
		if was == seen {
			return nil
		}
		var modseq int64
		if err := tx.QueryRow(ctx, `UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = $1 RETURNING highestmodseq`, fid).Scan(&modseq); err != nil {
			return err
		}
		expr := `array_remove(flags, '\Seen')`
		if seen {
			expr = `array_append(flags, '\Seen')`
		}
		if _, err := tx.Exec(ctx, `UPDATE messages SET flags = `+expr+`, modseq = $3 WHERE folder_id = $1 AND id = $2`, fid, id, modseq); err != nil {
			return err
		}
		changed = true
		return s.notifyTx(ctx, tx, store.Event{Kind: store.EventUpdated, Mailbox: mailbox, IDs: []string{id}})
	})
	s.observe("pg", "seen", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Summary{}, notFound(mailbox, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Summary{}, unavailable("set seen", err)
	}
	if changed {
		s.hub.Publish(store.Event{Kind: store.EventUpdated, Mailbox: mailbox, IDs: []string{id}})
	}
	sum, _, err := s.get(ctx, mailbox, id)
	return sum, err
}

// Arrival implements store.Arrivals, in the order the store recorded the
// messages (the arrival column).
func (s *Browser) Arrival(mailbox string, q store.Query, after string, newest bool) (store.Summary, bool, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	_, fid, err := s.folderOf(ctx, mailbox, "")
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadMailbox) {
		if errors.Is(err, store.ErrNotFound) && (after == "" || store.IsNewID(after)) {
			return store.Summary{}, false, nil
		}
		return store.Summary{}, false, fmt.Errorf("shared: message %s: %w", after, store.ErrNotFound)
	}
	if err != nil {
		return store.Summary{}, false, err
	}
	where, args := queryWhere(q, fid)
	if after != "" {
		var arrival int64
		err := s.pool.QueryRow(ctx, `SELECT arrival FROM messages WHERE folder_id = $1 AND id = $2`, fid, after).Scan(&arrival)
		switch {
		case errors.Is(err, pgx.ErrNoRows) && store.IsNewID(after):
			// Gone since (or never here): its id holds its arrival time.
			args = append(args, time.Unix(0, store.IDTime(after)))
			where += ` AND m.received > $` + strconv.Itoa(len(args))
		case errors.Is(err, pgx.ErrNoRows):
			return store.Summary{}, false, fmt.Errorf("shared: message %s: %w", after, store.ErrNotFound)
		case err != nil:
			return store.Summary{}, false, unavailable("arrival", err)
		default:
			args = append(args, arrival)
			where += ` AND m.arrival > $` + strconv.Itoa(len(args))
		}
	}
	order := ` ORDER BY m.arrival LIMIT 1`
	if newest {
		order = ` ORDER BY m.arrival DESC LIMIT 1`
	}
	start := time.Now()
	sum, err := scanSummary(s.pool.QueryRow(ctx, `SELECT `+summaryCols+` FROM messages m WHERE `+where+order, args...))
	s.observe("pg", "arrival", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Summary{}, false, nil
	}
	if err != nil {
		return store.Summary{}, false, unavailable("arrival", err)
	}
	return sum, true, nil
}

// SearchIDs returns the ids of the messages of a folder matching every
// condition of q (IMAP SEARCH's text keys; backend.TextSearcher).
func (s *Browser) SearchIDs(mailbox, folder string, q store.Query) (map[string]bool, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	_, fid, err := s.folderOf(ctx, mailbox, folder)
	if errors.Is(err, store.ErrNotFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	where, args := queryWhere(q, fid)
	start := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT m.id FROM messages m WHERE `+where, args...)
	if err != nil {
		s.observe("pg", "search", start, err)
		return nil, unavailable("search", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, unavailable("search", err)
		}
		out[id] = true
	}
	err = rows.Err()
	s.observe("pg", "search", start, err)
	return out, unavailable("search", err)
}

// Precomputed returns the FETCH precomputation of the messages ids of a
// folder (backend.FetchIndex); those without one are missing.
func (s *Browser) Precomputed(mailbox, folder string, ids []string) (map[string][]byte, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	out := map[string][]byte{}
	_, fid, err := s.folderOf(ctx, mailbox, folder)
	if errors.Is(err, store.ErrNotFound) || len(ids) == 0 {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT id, fetch_data FROM messages WHERE folder_id = $1 AND id = ANY($2) AND fetch_data IS NOT NULL`, fid, ids)
	if err != nil {
		s.observe("pg", "precomputed", start, err)
		return nil, unavailable("precomputed", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			return nil, unavailable("precomputed", err)
		}
		out[id] = b
	}
	err = rows.Err()
	s.observe("pg", "precomputed", start, err)
	return out, unavailable("precomputed", err)
}
