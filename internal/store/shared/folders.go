package shared

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
)

// IMAP's folders (store.Folders): rows of the folders table, with the
// subscriptions table. A folder's UIDVALIDITY, uidnext and highestmodseq
// are its row's; a rename changes only names, so UIDs and UIDVALIDITY go
// with the folder.

var _ store.Folders = (*Store)(nil)

// maxFolderName bounds a folder name in octets, as the Maildir bounds its
// directory name, so that a folder can move between the stores.
const maxFolderName = 200

// parseFolder checks a folder name as IMAP spells it and returns its
// canonical spelling (store.Inbox for any case of INBOX, RFC 9051 §5.1).
// The rules are the Maildir's, so that a mailbox migrates both ways:
// store.ErrBadFolder for invalid UTF-8, empty components (a leading,
// trailing or doubled separator), a '.' in a component, control
// characters, a name longer than maxFolderName, and children of INBOX.
func parseFolder(name string) (string, error) {
	if strings.EqualFold(name, store.Inbox) {
		return store.Inbox, nil
	}
	if name == "" || !utf8.ValidString(name) || len(name) > maxFolderName {
		return "", store.ErrBadFolder
	}
	parts := strings.Split(name, string(store.FolderSep))
	if strings.EqualFold(parts[0], store.Inbox) {
		return "", store.ErrBadFolder
	}
	for _, p := range parts {
		if p == "" || strings.ContainsRune(p, '.') {
			return "", store.ErrBadFolder
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return "", store.ErrBadFolder
			}
		}
	}
	return name, nil
}

// checkFolder checks mailbox and a folder name.
func checkFolder(mailbox, name string) (string, error) {
	if !store.ValidMailboxName(mailbox) {
		return "", fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	f, err := parseFolder(name)
	if err != nil {
		return "", fmt.Errorf("folder %q: %w", name, err)
	}
	return f, nil
}

// parents returns the folders above name, top first.
func parents(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == store.FolderSep {
			out = append(out, name[:i])
		}
	}
	return out
}

// specialUse is the RFC 6154 attribute of a folder name: a default
// folder's.
func specialUse(name string) string {
	for _, d := range store.DefaultFolders {
		if d.Name == name {
			return d.SpecialUse
		}
	}
	return ""
}

// eventFolder is the Event.Folder of a folder name: "" for INBOX.
func eventFolder(name string) string {
	if name == store.Inbox {
		return ""
	}
	return name
}

// insertFolder inserts folder name of mbox in tx unless it exists, and
// reports whether it did.
func insertFolder(ctx context.Context, tx pgx.Tx, mbox int64, name string) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO folders (mailbox_id, name, special_use, uidvalidity) VALUES ($1, $2, $3, $4)
		ON CONFLICT (mailbox_id, name) DO NOTHING`, mbox, name, specialUse(name), NewUIDValidity())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// ListFolders implements store.Folders. It first creates the missing
// DefaultFolders, subscribed (as the Maildir does, after Dovecot's auto =
// subscribe), in one transaction; when they exist that costs nothing but
// the listing.
func (s *Store) ListFolders(mailbox string) ([]store.FolderInfo, error) {
	if !store.ValidMailboxName(mailbox) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	mbox, err := s.mailboxID(ctx, mailbox, true)
	if err != nil {
		s.observe("pg", "list folders", start, err)
		return nil, fmt.Errorf("list folders: %w", err)
	}
	names, err := s.folderNames(ctx, s.pool, mbox)
	if err == nil {
		var missing []string
		for _, d := range store.DefaultFolders {
			if !slices.Contains(names, d.Name) {
				missing = append(missing, d.Name)
			}
		}
		if len(missing) > 0 {
			err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				for _, n := range missing {
					made, err := insertFolder(ctx, tx, mbox, n)
					if err != nil {
						return err
					}
					if made {
						if _, err := tx.Exec(ctx, `INSERT INTO subscriptions (mailbox_id, name) VALUES ($1, $2)
							ON CONFLICT DO NOTHING`, mbox, n); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err == nil {
				names, err = s.folderNames(ctx, s.pool, mbox)
			}
		}
	}
	var subs []string
	if err == nil {
		subs, err = s.subscriptions(ctx, mbox)
	}
	s.observe("pg", "list folders", start, err)
	if err != nil {
		return nil, unavailable("list folders of "+mailbox, err)
	}
	out := []store.FolderInfo{{Name: store.Inbox, Subscribed: slices.Contains(subs, store.Inbox)}}
	var rest []store.FolderInfo
	for _, n := range names {
		if n == store.Inbox {
			continue
		}
		rest = append(rest, store.FolderInfo{Name: n, SpecialUse: specialUse(n), Subscribed: slices.Contains(subs, n)})
	}
	slices.SortFunc(rest, func(a, b store.FolderInfo) int { return strings.Compare(a.Name, b.Name) })
	return append(out, rest...), nil
}

// folderNames returns the names of the folders of mbox.
func (s *Store) folderNames(ctx context.Context, q querier, mbox int64) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT name FROM folders WHERE mailbox_id = $1`, mbox)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// subscriptions returns the subscribed names of mbox, by name.
func (s *Store) subscriptions(ctx context.Context, mbox int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT name FROM subscriptions WHERE mailbox_id = $1 ORDER BY name`, mbox)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// CreateFolder implements store.Folders: the folder and its missing
// parents (RFC 9051 §6.3.4: a server SHOULD create the superior
// hierarchical names needed), in one transaction, each with a fresh
// UIDVALIDITY.
func (s *Store) CreateFolder(mailbox, name string) error {
	f, err := checkFolder(mailbox, name)
	if err != nil {
		return err
	}
	if f == store.Inbox {
		return fmt.Errorf("create %s: %w", name, store.ErrFolderExists)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	mbox, err := s.mailboxID(ctx, mailbox, true)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	exists := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, p := range parents(f) {
			if _, err := insertFolder(ctx, tx, mbox, p); err != nil {
				return err
			}
		}
		made, err := insertFolder(ctx, tx, mbox, f)
		exists = err == nil && !made
		return err
	})
	s.observe("pg", "create folder", start, err)
	if err != nil {
		return unavailable("create "+name, err)
	}
	if exists {
		return fmt.Errorf("create %s: %w", name, store.ErrFolderExists)
	}
	return nil
}

// DeleteFolder implements store.Folders: the folder's row and its
// messages' rows go in one transaction (open Folders on it are told,
// EventDeleted); the blobs no other message refers to are deleted after
// the commit, best effort (the sweeper removes what a crash leaves).
func (s *Store) DeleteFolder(mailbox, name string) error {
	f, err := checkFolder(mailbox, name)
	if err != nil {
		return err
	}
	if f == store.Inbox {
		return fmt.Errorf("delete %s: %w", name, store.ErrCannot)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	mbox, err := s.mailboxID(ctx, mailbox, false)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	var answer error
	var ids, keys []string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		ids, keys, answer = nil, nil, nil
		var fid int64
		err := tx.QueryRow(ctx, `SELECT id FROM folders WHERE mailbox_id = $1 AND name = $2 FOR UPDATE`, mbox, f).Scan(&fid)
		if errors.Is(err, pgx.ErrNoRows) {
			answer = store.ErrNotFound
			return nil
		}
		if err != nil {
			return err
		}
		var kids bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM folders WHERE mailbox_id = $1 AND starts_with(name, $2))`,
			mbox, f+string(store.FolderSep)).Scan(&kids); err != nil {
			return err
		}
		if kids {
			answer = store.ErrHasChildren
			return nil
		}
		rows, err := tx.Query(ctx, `DELETE FROM messages WHERE folder_id = $1 RETURNING id, blob_key`, fid)
		if err != nil {
			return err
		}
		if ids, keys, err = removedRows(rows); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM folders WHERE id = $1`, fid); err != nil {
			return err
		}
		if len(ids) > 0 {
			return s.notifyTx(ctx, tx, store.Event{Kind: store.EventDeleted, Mailbox: mailbox, Folder: f, IDs: ids})
		}
		return nil
	})
	s.observe("pg", "delete folder", start, err)
	if err != nil {
		return unavailable("delete "+name, err)
	}
	if answer != nil {
		return fmt.Errorf("delete %s: %w", name, answer)
	}
	if len(ids) > 0 {
		s.hub.Publish(store.Event{Kind: store.EventDeleted, Mailbox: mailbox, Folder: f, IDs: ids})
	}
	s.collect(keys)
	return nil
}

// RenameFolder implements store.Folders: the names of the folder and of
// its subfolders change in one transaction (their rows, hence UIDs and
// UIDVALIDITY, stay), missing parents of the new name are created, and
// the subscriptions are renamed. RFC 9051 §6.3.6: renaming INBOX moves its
// messages into the new folder and leaves INBOX empty (store.ErrLocked
// while a POP3 session holds it).
func (s *Store) RenameFolder(mailbox, from, to string) error {
	ff, err := checkFolder(mailbox, from)
	if err != nil {
		return err
	}
	tf, err := checkFolder(mailbox, to)
	if err != nil {
		return err
	}
	if tf == store.Inbox {
		return fmt.Errorf("rename to %s: %w", to, store.ErrFolderExists)
	}
	if ff == store.Inbox {
		return s.renameInbox(mailbox, tf)
	}
	if tf == ff || strings.HasPrefix(tf, ff+string(store.FolderSep)) {
		return fmt.Errorf("rename %s into itself: %w", from, store.ErrCannot)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	mbox, err := s.mailboxID(ctx, mailbox, false)
	if err != nil {
		return fmt.Errorf("rename %s: %w", from, err)
	}
	var answer error
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		answer = nil
		var fid int64
		err := tx.QueryRow(ctx, `SELECT id FROM folders WHERE mailbox_id = $1 AND name = $2 FOR UPDATE`, mbox, ff).Scan(&fid)
		if errors.Is(err, pgx.ErrNoRows) {
			answer = store.ErrNotFound
			return nil
		}
		if err != nil {
			return err
		}
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM folders WHERE mailbox_id = $1 AND name = $2)`, mbox, tf).Scan(&taken); err != nil {
			return err
		}
		if taken {
			answer = store.ErrFolderExists
			return nil
		}
		for _, p := range parents(tf) {
			if _, err := insertFolder(ctx, tx, mbox, p); err != nil {
				return err
			}
		}
		// A subfolder's name is from's prefix replaced by to's.
		sub := ff + string(store.FolderSep)
		n := utf8.RuneCountInString(ff)
		if _, err := tx.Exec(ctx, `UPDATE folders SET name = $3 || substr(name, $4 + 1)
			WHERE mailbox_id = $1 AND (name = $2 OR starts_with(name, $5))`, mbox, ff, tf, n, sub); err != nil {
			if isUnique(err) {
				answer = store.ErrFolderExists
				return errAnswer
			}
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO subscriptions (mailbox_id, name)
			SELECT mailbox_id, $3 || substr(name, $4 + 1) FROM subscriptions
			WHERE mailbox_id = $1 AND (name = $2 OR starts_with(name, $5))
			ON CONFLICT DO NOTHING`, mbox, ff, tf, n, sub); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM subscriptions WHERE mailbox_id = $1 AND (name = $2 OR starts_with(name, $3))`, mbox, ff, sub)
		return err
	})
	s.observe("pg", "rename folder", start, err)
	if answer != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, answer)
	}
	if err != nil {
		return unavailable("rename "+from, err)
	}
	return nil
}

// errAnswer rolls a transaction back whose answer is set.
var errAnswer = errors.New("shared: answered")

// renameInbox creates tf and moves every message of INBOX into it. While
// a POP3 session holds the maildrop it does nothing (store.ErrLocked);
// one taken between the check and the move makes the move fail alone.
func (s *Store) renameInbox(mailbox, tf string) error {
	ctx, cancel := s.call(context.Background())
	mbox, err := s.mailboxID(ctx, mailbox, true)
	held := false
	if err == nil {
		held, err = s.maildropLocked(ctx, s.pool, mbox)
		err = unavailable("rename INBOX", err)
	}
	cancel()
	if err != nil {
		return err
	}
	if held {
		return fmt.Errorf("rename INBOX: %w", store.ErrLocked)
	}
	if err := s.CreateFolder(mailbox, tf); err != nil {
		return err
	}
	in, err := s.OpenFolder(mailbox, store.Inbox)
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := in.Move(nil, tf); err != nil {
		return fmt.Errorf("rename INBOX: %w", err)
	}
	return nil
}

// SetSubscribed implements store.Folders.
func (s *Store) SetSubscribed(mailbox, name string, subscribed bool) error {
	f, err := checkFolder(mailbox, name)
	if err != nil {
		return err
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	mbox, err := s.mailboxID(ctx, mailbox, true)
	if err != nil {
		return err
	}
	if subscribed {
		_, err = s.pool.Exec(ctx, `INSERT INTO subscriptions (mailbox_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`, mbox, f)
	} else {
		_, err = s.pool.Exec(ctx, `DELETE FROM subscriptions WHERE mailbox_id = $1 AND name = $2`, mbox, f)
	}
	s.observe("pg", "subscribe", start, err)
	return unavailable("subscribe "+name, err)
}

// Subscriptions implements store.Folders: the subscribed names, by name.
func (s *Store) Subscriptions(mailbox string) ([]string, error) {
	if !store.ValidMailboxName(mailbox) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	mbox, err := s.mailboxID(ctx, mailbox, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	subs, err := s.subscriptions(ctx, mbox)
	s.observe("pg", "subscriptions", start, err)
	if err != nil {
		return nil, unavailable("subscriptions of "+mailbox, err)
	}
	return subs, nil
}

// OpenFolder implements store.Folders. INBOX always exists (the mailbox
// is created with it); another folder must (store.ErrNotFound).
func (s *Store) OpenFolder(mailbox, name string) (store.Folder, error) {
	f, err := checkFolder(mailbox, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	mbox, err := s.mailboxID(ctx, mailbox, true)
	if err != nil {
		return nil, fmt.Errorf("open folder %s: %w", name, err)
	}
	var fid int64
	err = s.pool.QueryRow(ctx, `SELECT id FROM folders WHERE mailbox_id = $1 AND name = $2`, mbox, f).Scan(&fid)
	s.observe("pg", "open folder", start, err)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("open folder %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable("open folder "+name, err)
	}
	return s.newFolder(mailbox, mbox, fid, f), nil
}
