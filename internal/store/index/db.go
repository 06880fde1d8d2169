package index

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// schemaVersion is the layout of the index. An index of another version
// (an older Postoffice) is moved aside and rebuilt from the Maildir.
const schemaVersion = 4

// The schema. msgs holds one row per message file: where it is, what
// POP3 needs (id, size, order), and once indexed, what the web list shows.
// Its rowid is the arrival time in nanoseconds (one more for each message
// arrived in the same nanosecond), so that newest first is the table's
// own order, and FTS5, which returns matches by rowid, gives the newest
// matches first without sorting them all.
// fts holds the search text of the indexed rows, with the rowid of msgs:
// contentless (the text is not stored twice), accent- and case-folding
// (unicode61 with remove_diacritics 2), with prefix indexes for the short
// prefixes a search box sends while typing.
// Version 3 added msgs.fetch and msgs.mtime, version 4 msgs.tags.
const schema = `
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE msgs (
	rowid    INTEGER PRIMARY KEY, -- the arrival time in ns, made unique: newest first is rowid DESC
	key      TEXT NOT NULL UNIQUE,
	loc      TEXT NOT NULL,
	id       TEXT NOT NULL,
	size     INTEGER NOT NULL,
	received INTEGER NOT NULL,
	seen     INTEGER NOT NULL,
	indexed  INTEGER NOT NULL DEFAULT 0,
	date     INTEGER NOT NULL DEFAULT 0,
	hfrom    TEXT NOT NULL DEFAULT '',
	hto      TEXT NOT NULL DEFAULT '',
	subject  TEXT NOT NULL DEFAULT '',
	attach   INTEGER NOT NULL DEFAULT 0,
	fetch    BLOB, -- Options.Precompute of the whole message; NULL when not indexed or too large
	mtime    INTEGER NOT NULL DEFAULT 0, -- the file's modification time in ns (IMAP INTERNALDATE)
	tags     TEXT NOT NULL DEFAULT '' -- recipient tags (store.Summary.Tags) as "\nt1\nt2\n"; '' for none
);
CREATE INDEX msgs_id ON msgs (id);
CREATE INDEX msgs_pending ON msgs (indexed) WHERE indexed = 0;
CREATE VIRTUAL TABLE fts USING fts5 (hfrom, hto, subject, body,
	content = '', contentless_delete = 1,
	tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3');
CREATE TRIGGER msgs_gone AFTER DELETE ON msgs WHEN old.indexed = 1 BEGIN
	DELETE FROM fts WHERE rowid = old.rowid;
END;
`

// openDB opens the index file at path, creating it when missing. An
// index that is not one (garbage, truncated, another version) is moved
// aside and a new one created: the index never stops a start, since it
// can be rebuilt from the Maildir. The second result says whether the
// index is new (every message must be read).
func openDB(path string, log *slog.Logger) (*sql.DB, bool, error) {
	db, fresh, err := tryOpenDB(path)
	if err == nil {
		return db, fresh, nil
	}
	if !isCorrupt(err) && !errors.Is(err, errNotIndex) {
		return nil, false, fmt.Errorf("index %s: %w", path, err)
	}
	aside, merr := quarantine(path)
	if merr != nil {
		return nil, false, fmt.Errorf("index %s: %v; moving it aside: %w", path, err, merr)
	}
	log.Warn("index unusable: moved aside, rebuilding from the Maildir", "path", path, "moved_to", aside, "err", err)
	db, _, err = tryOpenDB(path)
	if err != nil {
		return nil, false, fmt.Errorf("index %s: %w", path, err)
	}
	return db, true, nil
}

// dsn is how every connection to an index is opened: WAL (readers never
// wait for the writer), synchronous=NORMAL (a crash loses at most the last
// transactions, which the next reconcile redoes from the Maildir, and
// never corrupts), a busy timeout for the other process (the reindex
// command, a second server), and no fsync on the durable path: the index
// is not the truth.
func dsn(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(OFF)&_txlock=immediate"
}

func tryOpenDB(path string) (*sql.DB, bool, error) {
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, fs.ErrNotExist)
	wal, walErr := os.Stat(path + "-wal")
	walEmpty := errors.Is(walErr, fs.ErrNotExist) || walErr == nil && wal.Size() == 0
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, false, err
	}
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	fail := func(err error) (*sql.DB, bool, error) {
		db.Close()
		return nil, false, err
	}
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return fail(err)
	}
	if version == 0 {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
			return fail(err)
		}
		if n != 0 {
			return fail(errNotIndex)
		}
		if _, err := db.Exec(schema + "PRAGMA user_version = " + strconv.Itoa(schemaVersion) + ";"); err != nil {
			return fail(err)
		}
		return db, true, nil
	}
	if version != schemaVersion {
		return fail(fmt.Errorf("%w: version %d, want %d", errNotIndex, version, schemaVersion))
	}
	// A file cut short (a full disk, a copy interrupted) is found now
	// rather than at the first listing, without reading the whole file:
	// its header says how many pages it has. With a WAL not empty the
	// pages may be there instead; then, as for any damage found later, the
	// first query that meets it has the index moved aside and rebuilt.
	if walEmpty {
		var pages, pageSize int64
		if err := db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
			return fail(err)
		}
		if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
			return fail(err)
		}
		if fi, err := os.Stat(path); err == nil && fi.Size() < pages*pageSize {
			return fail(fmt.Errorf("%w: file cut short: %d of %d octets", errNotIndex, fi.Size(), pages*pageSize))
		}
	}
	// Walk to the last entries of the tables and indexes (a few pages).
	var last sql.NullString
	for _, q := range []string{"SELECT max(rowid) FROM msgs", "SELECT max(id) FROM msgs INDEXED BY msgs_id",
		"SELECT count(*) FROM fts WHERE fts MATCH 'postoffice*'"} {
		if err := db.QueryRow(q).Scan(&last); err != nil {
			return fail(err)
		}
	}
	return db, fresh, nil
}

// errNotIndex: the file is a database, but not an index of this version.
var errNotIndex = errors.New("not a Postoffice index")

// quarantine moves an unusable index (and its -wal and -shm) aside, named
// with the time, and returns the new name of the main file.
func quarantine(path string) (string, error) {
	aside := path + ".broken-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Rename(path, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	for _, ext := range []string{"-wal", "-shm"} {
		if err := os.Rename(path+ext, aside+ext); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return aside, nil
}

// isCorrupt reports whether err says the index file is damaged (so that
// it should be moved aside and rebuilt rather than reported).
func isCorrupt(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_FORMAT:
			return true
		}
	}
	return err != nil && strings.Contains(err.Error(), "malformed")
}

// metaGet reads a value of the meta table ("" when unset).
func metaGet(q interface {
	QueryRow(string, ...any) *sql.Row
}, k string) (string, error) {
	var v string
	err := q.QueryRow("SELECT v FROM meta WHERE k = ?", k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func metaSet(tx *sql.Tx, k, v string) error {
	_, err := tx.Exec("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", k, v)
	return err
}
