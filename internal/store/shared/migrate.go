package shared

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
)

// MigrationFolder is a folder as the shared store holds it, for a
// migration to a Maildir.
type MigrationFolder struct {
	Name          string
	SpecialUse    string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Keywords      []string
	Messages      []MigrationMessage // by UID ascending
}

// MigrationMessage is a message row of a MigrationFolder.
type MigrationMessage struct {
	ID       string
	UID      uint32
	Flags    []string // system flags
	Keywords []string
	Size     int64 // wire size
	Received time.Time
	BlobKey  string
	BlobSize int64
}

// ImportFolder copies folder name of mailbox from the Maildir md into the
// store: the folder row gets the source's UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ, keywords and special use, and every message keeps its
// id, UID, flags, keywords and received time, its object holding the
// file's bytes as they are (a foreign file with LF line ends is stored
// as it is, with wire = false: readers normalize it). A message whose UID
// the folder already has is skipped (an interrupted migration can be
// run again). Each message commits in its own transaction after its
// object's PUT returned, so nothing is visible partly. It returns how
// many messages it moved.
func (s *Store) ImportFolder(ctx context.Context, md *maildir.Maildir, mailbox, name, specialUse string) (int, error) {
	src, err := md.ExportFolder(mailbox, name)
	if err != nil {
		return 0, fmt.Errorf("migrate %s/%s: read the Maildir: %w", mailbox, name, err)
	}
	cctx, cancel := s.call(ctx)
	mbox, err := s.mailboxID(cctx, mailbox, true)
	cancel()
	if err != nil {
		return 0, err
	}
	st := src.State
	kw := slices.DeleteFunc(slices.Clone(src.Keywords), func(k string) bool { return k == "" })
	var fid int64
	var have int64
	cctx, cancel = s.call(ctx)
	err = s.pool.QueryRow(cctx, `INSERT INTO folders (mailbox_id, name, special_use, uidvalidity, uidnext, highestmodseq, keywords)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (mailbox_id, name) DO UPDATE SET special_use = EXCLUDED.special_use,
			uidvalidity = CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.folder_id = folders.id)
				THEN folders.uidvalidity ELSE EXCLUDED.uidvalidity END,
			uidnext = greatest(folders.uidnext, EXCLUDED.uidnext),
			highestmodseq = greatest(folders.highestmodseq, EXCLUDED.highestmodseq),
			keywords = EXCLUDED.keywords
		RETURNING id, uidvalidity`, mbox, name, specialUse, int64(st.UIDValidity), int64(st.UIDNext),
		int64(max(st.HighestModSeq, 1)), nonNil(kw)).Scan(&fid, &have)
	cancel()
	if err != nil {
		return 0, unavailable("migrate folder", err)
	}
	if uint32(have) != st.UIDValidity {
		return 0, fmt.Errorf("migrate %s/%s: the shared store's folder holds messages under UIDVALIDITY %d, the Maildir's is %d", mailbox, name, have, st.UIDValidity)
	}
	// A message is there when the folder has its UID (UIDs are kept, ids
	// may not be: see below).
	present, ids := map[uint32]bool{}, map[string]bool{}
	cctx, cancel = s.call(ctx)
	rows, err := s.pool.Query(cctx, `SELECT id, folder_id, uid FROM messages WHERE mailbox_id = $1`, mbox)
	if err == nil {
		var id string
		var f, uid int64
		_, err = pgx.ForEachRow(rows, []any{&id, &f, &uid}, func() error {
			ids[id] = true
			if f == fid {
				present[uint32(uid)] = true
			}
			return nil
		})
	}
	cancel()
	if err != nil {
		return 0, unavailable("migrate list", err)
	}
	moved := 0
	for _, msg := range st.Messages {
		if err := ctx.Err(); err != nil {
			return moved, err
		}
		path := src.Files[msg.ID].Path
		if present[msg.UID] {
			continue
		}
		// A Maildir COPY keeps the id in the other folder; the shared
		// store's ids are unique in the mailbox, so a copy whose id is
		// taken gets a fresh one (INBOX is moved first: its ids, the POP3
		// UIDLs, are kept).
		if ids[msg.ID] {
			msg.ID = store.NewID()
		}
		ids[msg.ID] = true
		if err := s.importMessage(ctx, mbox, fid, name, msg, path); err != nil {
			return moved, fmt.Errorf("migrate %s/%s: message %s: %w", mailbox, name, msg.ID, err)
		}
		moved++
	}
	return moved, nil
}

func (s *Store) importMessage(ctx context.Context, mbox, fid int64, folder string, msg store.FolderMessage, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	wire, err := maildir.WireSize(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	// The description reads the message as the protocols see it.
	norm, err := io.ReadAll(maildir.WireReader(bytes.NewReader(raw), int64(len(raw))))
	if err != nil {
		return err
	}
	desc, err := index.Describe(norm, s.opts.Precompute)
	if err != nil {
		desc = index.Description{}
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.Timeout*30)
	key, size, err := s.putBlob(pctx, msg.ID, bytes.NewReader(raw))
	cancel()
	if err != nil {
		return unavailable("migrate put", err)
	}
	sys, kw := systemFlags(msg.Flags)
	nm := newMessage{ID: msg.ID, Flags: sys, Keywords: kw, Size: wire, BlobSize: size,
		Wire: wire == size, Received: msg.Received, BlobKey: key, Desc: desc, UID: msg.UID}
	cctx, cancel := s.call(ctx)
	defer cancel()
	err = pgx.BeginFunc(cctx, s.pool, func(tx pgx.Tx) error {
		if err := insertBlob(cctx, tx, key, size); err != nil {
			return err
		}
		_, _, err := insertMessages(cctx, tx, mbox, fid, []newMessage{nm})
		return err
	})
	if err != nil {
		// The object is an orphan the sweeper removes.
		if isUnique(err) {
			return nil
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		return unavailable("migrate insert", err)
	}
	return nil
}

// ImportSubscriptions adds names to mailbox's subscriptions.
func (s *Store) ImportSubscriptions(ctx context.Context, mailbox string, names []string) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	mbox, err := s.mailboxID(cctx, mailbox, true)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := s.pool.Exec(cctx, `INSERT INTO subscriptions (mailbox_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`, mbox, n); err != nil {
			return unavailable("migrate subscriptions", err)
		}
	}
	return nil
}

// ExportFolders returns the folders of mailbox with their message rows,
// for a migration to a Maildir (store.ErrNotFound: no such mailbox).
func (s *Store) ExportFolders(ctx context.Context, mailbox string) ([]MigrationFolder, []string, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	mbox, err := s.mailboxID(cctx, mailbox, false)
	if err != nil {
		return nil, nil, err
	}
	var out []MigrationFolder
	rows, err := s.pool.Query(cctx, `SELECT id, name, special_use, uidvalidity, uidnext, highestmodseq, keywords
		FROM folders WHERE mailbox_id = $1 ORDER BY name`, mbox)
	if err != nil {
		return nil, nil, unavailable("migrate folders", err)
	}
	var ids []int64
	var (
		id       int64
		f        MigrationFolder
		v, n, hm int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &f.Name, &f.SpecialUse, &v, &n, &hm, &f.Keywords}, func() error {
		f.UIDValidity, f.UIDNext, f.HighestModSeq = uint32(v), uint32(min(n, 4294967295)), uint64(hm)
		out = append(out, f)
		ids = append(ids, id)
		f = MigrationFolder{}
		return nil
	})
	if err != nil {
		return nil, nil, unavailable("migrate folders", err)
	}
	for i, fid := range ids {
		rows, err := s.pool.Query(cctx, `SELECT id, uid, flags, keywords, size, received, blob_key, blob_size
			FROM messages WHERE folder_id = $1 ORDER BY uid`, fid)
		if err != nil {
			return nil, nil, unavailable("migrate messages", err)
		}
		var m MigrationMessage
		var uid int64
		_, err = pgx.ForEachRow(rows, []any{&m.ID, &uid, &m.Flags, &m.Keywords, &m.Size, &m.Received, &m.BlobKey, &m.BlobSize}, func() error {
			m.UID = uint32(uid)
			out[i].Messages = append(out[i].Messages, m)
			m = MigrationMessage{}
			return nil
		})
		if err != nil {
			return nil, nil, unavailable("migrate messages", err)
		}
	}
	subs, err := s.subscriptions(cctx, mbox)
	if err != nil {
		return nil, nil, err
	}
	return out, subs, nil
}

// OpenRawBlob returns the object of a migrated message as it is stored
// (not normalized: a foreign file's bytes come back as they were).
func (s *Store) OpenRawBlob(ctx context.Context, m MigrationMessage) (io.ReadCloser, error) {
	if m.BlobSize == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	rctx, cancel := context.WithTimeout(ctx, s.readTimeout(m.BlobSize))
	rc, err := s.blobs.Get(rctx, m.BlobKey, 0, m.BlobSize)
	if err != nil {
		cancel()
		return nil, unavailable("migrate get", err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	cancel()
	if err != nil {
		return nil, unavailable("migrate get", err)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// MigratedUIDs returns the UIDs folder name of mailbox holds (none when
// the mailbox or the folder does not exist): what a migration into it
// would skip.
func (s *Store) MigratedUIDs(ctx context.Context, mailbox, name string) (map[uint32]bool, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	out := map[uint32]bool{}
	mbox, err := s.mailboxID(cctx, mailbox, false)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(cctx, `SELECT m.uid FROM messages m JOIN folders f ON f.id = m.folder_id
		WHERE f.mailbox_id = $1 AND f.name = $2`, mbox, name)
	if err == nil {
		var uid int64
		_, err = pgx.ForEachRow(rows, []any{&uid}, func() error { out[uint32(uid)] = true; return nil })
	}
	if err != nil {
		return nil, unavailable("migrate uids", err)
	}
	return out, nil
}
