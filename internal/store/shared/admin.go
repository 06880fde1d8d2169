package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"postoffice/internal/store"
)

// Mailboxes implements store.Admin: the mailbox rows, sorted.
func (s *Store) Mailboxes() ([]string, error) {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT name FROM mailboxes ORDER BY name`)
	var out []string
	if err == nil {
		for rows.Next() {
			var n string
			if err = rows.Scan(&n); err != nil {
				break
			}
			out = append(out, n)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	s.observe("pg", "mailboxes", start, err)
	if err != nil {
		return nil, unavailable("list mailboxes", err)
	}
	return out, nil
}

// HasMailbox implements store.Admin.
func (s *Store) HasMailbox(mailbox string) (bool, error) {
	if !store.ValidMailboxName(mailbox) {
		return false, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	_, err := s.mailboxID(ctx, mailbox, false)
	s.observe("pg", "mailbox", start, err)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// CreateMailbox implements store.Admin: the mailbox row and its INBOX,
// committed when it returns.
func (s *Store) CreateMailbox(mailbox string) error {
	if !store.ValidMailboxName(mailbox) {
		return fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	_, err := s.mailboxID(ctx, mailbox, true)
	s.observe("pg", "create mailbox", start, err)
	return err
}

// Usage implements store.Admin: INBOX's count and sizes.
func (s *Store) Usage(mailbox string) (store.Usage, error) {
	var u store.Usage
	if !store.ValidMailboxName(mailbox) {
		return u, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	err := s.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(m.size), 0)::bigint FROM messages m
		JOIN folders f ON f.id = m.folder_id JOIN mailboxes b ON b.id = f.mailbox_id
		WHERE b.name = $1 AND f.name = $2`, mailbox, store.Inbox).Scan(&u.Messages, &u.Bytes)
	s.observe("pg", "usage", start, err)
	if err != nil {
		return store.Usage{}, unavailable("usage of "+mailbox, err)
	}
	return u, nil
}

// List implements store.Admin: INBOX as a POP3 login sees it (uid
// order), without the lease.
func (s *Store) List(mailbox string) ([]store.Listed, error) {
	if !store.ValidMailboxName(mailbox) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	rows, err := s.pool.Query(ctx, `SELECT m.id, m.size, m.blob_key, m.wire, m.blob_size, m.received FROM messages m
		JOIN folders f ON f.id = m.folder_id JOIN mailboxes b ON b.id = f.mailbox_id
		WHERE b.name = $1 AND f.name = $2 ORDER BY m.uid`, mailbox, store.Inbox)
	var out []store.Listed
	if err == nil {
		for rows.Next() {
			var m dropMsg
			if err = rows.Scan(&m.ID, &m.Size, &m.key, &m.wire, &m.blobSize, &m.received); err != nil {
				break
			}
			out = append(out, store.Listed{MessageInfo: m.MessageInfo, Received: m.received,
				Open: func() (io.ReadCloser, error) { return s.openListed(mailbox, m) }})
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	s.observe("pg", "list", start, err)
	if err != nil {
		return nil, unavailable("list "+mailbox, err)
	}
	return out, nil
}

// Prune implements store.Admin as the Maildir's does: it takes the
// maildrop's lease (store.ErrLocked while a POP3 session holds it) and
// removes the oldest messages by delivery time.
func (s *Store) Prune(mailbox string, policy store.RetentionPolicy, limit int, now time.Time) (store.PruneResult, error) {
	var res store.PruneResult
	if !policy.Enabled() {
		// Nothing to remove; Left still says what the mailbox holds.
		u, err := s.Usage(mailbox)
		res.Left = u.Messages
		return res, err
	}
	md, err := s.openMaildrop(mailbox, `received, arrival`)
	if err != nil {
		return res, err
	}
	defer md.Close()
	n := len(md.msgs)
	// Remove md.msgs[:cut] (oldest first).
	cut, more := policy.Cut(n, func(i int) time.Time { return md.msgs[i].received }, limit, now)
	res.More = more
	idx := make([]int, cut)
	for i := range idx {
		idx[i] = i
		res.Bytes += md.msgs[i].Size
	}
	res.Left = n - cut
	if cut == 0 {
		return res, nil
	}
	if err := md.Commit(idx); err != nil {
		return res, fmt.Errorf("prune %s: %w", mailbox, err)
	}
	res.Removed = cut
	return res, nil
}

// openListed opens a message of a List if it is still in INBOX (its blob
// may outlive it, shared with other mailboxes): else store.ErrNotFound.
func (s *Store) openListed(mailbox string, m dropMsg) (io.ReadCloser, error) {
	ctx, cancel := s.call(context.Background())
	start := time.Now()
	var there bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messages m
		JOIN folders f ON f.id = m.folder_id JOIN mailboxes b ON b.id = m.mailbox_id
		WHERE b.name = $1 AND m.id = $2 AND f.name = $3)`, mailbox, m.ID, store.Inbox).Scan(&there)
	cancel()
	s.observe("pg", "listed", start, err)
	if err != nil {
		return nil, unavailable("open "+m.ID, err)
	}
	if !there {
		return nil, fmt.Errorf("shared: %s in %s: %w", m.ID, mailbox, store.ErrNotFound)
	}
	return s.openBlob(context.Background(), m.key, m.wire, m.blobSize, 0, -1)
}
