package shared

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
)

// newMessage is a message row to insert (a delivery's copy, an APPEND, a
// COPY, a migrated message).
type newMessage struct {
	ID string
	// Flags are system flags (store.FlagSeen...), Keywords the others.
	Flags    []string
	Keywords []string
	// Size is the wire size; BlobSize the object's size (equal when Wire).
	Size, BlobSize int64
	Wire           bool
	Received       time.Time
	BlobKey        string
	// Desc is the summary and search text (index.Describe).
	Desc index.Description
	// UID, when not zero, is kept (a migration); else the folder's next.
	UID uint32
}

// insertBlob records the object key, whose PUT has returned, in tx: the
// messages inserted in the same transaction refer to it.
func insertBlob(ctx context.Context, tx pgx.Tx, key string, size int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO blobs (key, size) VALUES ($1, $2)`, key, size)
	return err
}

// insertMessages inserts msgs into folder fid of mailbox mbox in tx and
// returns their UIDs and the modseq they got. UIDs come from the
// folder's uidnext, advanced in the same transaction: the row lock of the
// UPDATE orders concurrent deliveries to one folder, so UIDs are
// assigned in commit order and never reused (RFC 9051 §2.3.1.1). A
// message with UID set keeps it and moves uidnext past it.
func insertMessages(ctx context.Context, tx pgx.Tx, mbox, fid int64, msgs []newMessage) ([]uint32, uint64, error) {
	if len(msgs) == 0 {
		return nil, 0, nil
	}
	var next int64
	var modseq uint64
	fixed := int64(0)
	for _, m := range msgs {
		fixed = max(fixed, int64(m.UID))
	}
	n := int64(0)
	for _, m := range msgs {
		if m.UID == 0 {
			n++
		}
	}
	err := tx.QueryRow(ctx, `UPDATE folders SET uidnext = greatest(uidnext, $2 + 1) + $3,
		highestmodseq = highestmodseq + 1
		WHERE id = $1 RETURNING greatest(uidnext - $3, 1), highestmodseq`, fid, fixed, n).Scan(&next, &modseq)
	if err != nil {
		return nil, 0, err
	}
	if next+n-1 > 4294967295 {
		return nil, 0, fmt.Errorf("shared: folder %d has no UIDs left", fid)
	}
	uids := make([]uint32, len(msgs))
	batch := &pgx.Batch{}
	for i, m := range msgs {
		uid := m.UID
		if uid == 0 {
			uid = uint32(next)
			next++
		}
		uids[i] = uid
		d := &m.Desc.Summary
		var hdate *time.Time
		if !d.Date.IsZero() {
			t := d.Date
			hdate = &t
		}
		flags := m.Flags
		if flags == nil {
			flags = []string{}
		}
		kw := m.Keywords
		if kw == nil {
			kw = []string{}
		}
		blobSize := m.BlobSize
		if m.Wire && blobSize == 0 {
			blobSize = m.Size
		}
		f := ftsInput(m.Desc)
		batch.Queue(`INSERT INTO messages (mailbox_id, id, folder_id, uid, modseq, flags, keywords, size,
			received, header_date, from_addr, to_addrs, subject, attachments, tags, blob_key,
			wire, blob_size, fetch_data, fts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
			setweight(to_tsvector('simple', $20), 'A') || setweight(to_tsvector('simple', $21), 'B') ||
			setweight(to_tsvector('simple', $22), 'C') || setweight(to_tsvector('simple', $23), 'D'))`,
			mbox, m.ID, fid, int64(uid), int64(modseq), flags, kw, m.Size,
			m.Received, hdate, d.From, nonNil(d.To), d.Subject, d.Attachments, nonNil(d.Tags), m.BlobKey,
			m.Wire, blobSize, m.Desc.Fetch, f[0], f[1], f[2], f[3])
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, 0, err
	}
	return uids, modseq, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ftsInput returns the folded texts of the four weights of the fts
// column: A from, B to and cc, C subject, D body text.
func ftsInput(d index.Description) [4]string {
	return [4]string{
		Fold(d.Summary.From),
		Fold(strings.Join(d.Summary.To, " ")),
		Fold(d.Summary.Subject),
		Fold(d.Text),
	}
}

// maxFTSInput bounds each text given to to_tsvector (its result must stay
// under PostgreSQL's 1 MB tsvector limit).
const maxFTSInput = 256 << 10

// Fold returns s as the search matches it: lower case, without accents
// (decomposed, combining marks removed), punctuation as spaces, so that
// to_tsvector('simple', ...) splits it into the words the index's
// unicode61 tokenizer would. Both the stored text and the query words go
// through it.
func Fold(s string) string {
	if len(s) > maxFTSInput {
		s = s[:maxFTSInput]
	}
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.Map(func(r rune) rune {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			return unicode.ToLower(r)
		case r == utf8RuneError:
			return ' '
		}
		return ' '
	}, out)
}

const utf8RuneError = '\uFFFD'

// systemFlags splits flags into the system flags the messages table
// holds and keywords.
func systemFlags(flags []string) (sys, kw []string) {
	sys, kw = []string{}, []string{}
	for _, f := range flags {
		switch strings.ToLower(f) {
		case `\seen`:
			sys = append(sys, store.FlagSeen)
		case `\answered`:
			sys = append(sys, store.FlagAnswered)
		case `\flagged`:
			sys = append(sys, store.FlagFlagged)
		case `\deleted`:
			sys = append(sys, store.FlagDeleted)
		case `\draft`:
			sys = append(sys, store.FlagDraft)
		case `\recent`:
		default:
			kw = append(kw, f)
		}
	}
	return sys, kw
}

// removedRows reads the (id, blob_key) rows of a DELETE ... RETURNING:
// the ids removed and their distinct blob keys (for collect).
func removedRows(rows pgx.Rows) (ids, keys []string, err error) {
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var id, key string
		if err := rows.Scan(&id, &key); err != nil {
			return nil, nil, err
		}
		ids = append(ids, id)
		if !seen[key] {
			seen[key] = true
			keys = append(keys, key)
		}
	}
	return ids, keys, rows.Err()
}
