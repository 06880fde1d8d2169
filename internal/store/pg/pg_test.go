package pg

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"postoffice/internal/testsupport/engines"
)

func TestMain(m *testing.M) { engines.Main(m) }

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func pool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := Connect(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func version(t *testing.T, p *pgxpool.Pool) int {
	t.Helper()
	v, err := Version(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// An empty database migrates up to Latest, with every table issue 18
// names; a second run applies nothing.
func TestMigrateEmptyDatabase(t *testing.T) {
	p := pool(t, engines.Postgres(t))
	if v := version(t, p); v != 0 {
		t.Fatalf("version of an empty database = %d, want 0", v)
	}
	done, err := Migrate(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != Latest() || done[0] != 1 || done[len(done)-1] != Latest() {
		t.Fatalf("applied %v, want 1..%d", done, Latest())
	}
	if v := version(t, p); v != Latest() {
		t.Fatalf("version = %d, want %d", v, Latest())
	}
	for _, table := range []string{"mailboxes", "folders", "subscriptions", "messages", "blobs", "maildrop_leases", "schema_migrations"} {
		var ok bool
		if err := p.QueryRow(ctxT(t), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s missing (err %v)", table, err)
		}
	}
	done, err = Migrate(ctxT(t), p)
	if err != nil || len(done) != 0 {
		t.Fatalf("second run applied %v, err %v; want nothing", done, err)
	}
}

// Migrators started together (two nodes) each succeed and every migration
// is applied once.
func TestMigrateConcurrent(t *testing.T) {
	dsn := engines.Postgres(t)
	const n = 4
	var wg sync.WaitGroup
	applied := make([][]int, n)
	errs := make([]error, n)
	for i := range n {
		p := pool(t, dsn)
		wg.Go(func() { applied[i], errs[i] = Migrate(ctxT(t), p) })
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("migrator %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != Latest() {
		t.Errorf("migrations applied %d times in all (%v), want %d", total, applied, Latest())
	}
	var rows int
	if err := pool(t, dsn).QueryRow(ctxT(t), "SELECT count(*) FROM schema_migrations").Scan(&rows); err != nil || rows != Latest() {
		t.Fatalf("schema_migrations has %d rows (err %v), want %d", rows, err, Latest())
	}
}

// A database migrated by a newer binary, or with a migration whose file
// changed since, is refused.
func TestMigrateRefusesUnknownSchema(t *testing.T) {
	p := pool(t, engines.Postgres(t))
	if _, err := Migrate(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctxT(t), "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'future.sql', 'x')", Latest()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctxT(t), p); !errors.Is(err, ErrSchemaNewer) {
		t.Fatalf("newer schema: err = %v, want ErrSchemaNewer", err)
	}
	if _, err := p.Exec(ctxT(t), "DELETE FROM schema_migrations WHERE version > 1; UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctxT(t), p); err == nil || !strings.Contains(err.Error(), "other content") {
		t.Fatalf("changed migration: err = %v", err)
	}
}

// A migration that fails leaves nothing of itself: the schema stays at the
// version before it, and the next run applies it again.
func TestMigrateFailureRollsBack(t *testing.T) {
	p := pool(t, engines.Postgres(t))
	files := fstest.MapFS{
		"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x int);")},
		"m/0002_b.sql": {Data: []byte("CREATE TABLE b (x int); SELECT no_such_function();")},
	}
	done, err := migrate(ctxT(t), p, files, "m")
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") || len(done) != 1 {
		t.Fatalf("applied %v, err %v; want [1] and the error of 0002_b.sql", done, err)
	}
	if v := version(t, p); v != 1 {
		t.Fatalf("version = %d, want 1", v)
	}
	var b bool
	if err := p.QueryRow(ctxT(t), "SELECT to_regclass('b') IS NOT NULL").Scan(&b); err != nil || b {
		t.Fatalf("table b of the failed migration exists (err %v)", err)
	}
	files["m/0002_b.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (x int);")}
	if done, err := migrate(ctxT(t), p, files, "m"); err != nil || len(done) != 1 || done[0] != 2 {
		t.Fatalf("rerun applied %v, err %v; want [2]", done, err)
	}
}

func TestMigrationFileNames(t *testing.T) {
	for name, files := range map[string]fstest.MapFS{
		"gap":       {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"duplicate": {"m/0001_a.sql": {}, "m/0001_b.sql": {}},
		"bad name":  {"m/1_a.sql": {}},
	} {
		if _, err := parseMigrations(files, "m"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Migrations(); err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
}

// The schema refuses what would break the store's invariants: a message
// without its blob row, a UID out of range, an unknown system flag, a
// duplicate UID or id.
func TestSchemaConstraints(t *testing.T) {
	p := pool(t, engines.Postgres(t))
	if _, err := Migrate(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	var mbox, folder int64
	if err := p.QueryRow(ctx, "INSERT INTO mailboxes (name) VALUES ('alice') RETURNING id").Scan(&mbox); err != nil {
		t.Fatal(err)
	}
	if err := p.QueryRow(ctx, "INSERT INTO folders (mailbox_id, name, uidvalidity) VALUES ($1, 'INBOX', 1) RETURNING id", mbox).Scan(&folder); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "INSERT INTO blobs (key, size) VALUES ('k1', 5)"); err != nil {
		t.Fatal(err)
	}
	insert := func(id string, uid int64, flags []string, blob string) error {
		_, err := p.Exec(ctx, `INSERT INTO messages (mailbox_id, id, folder_id, uid, modseq, flags, size, received, blob_key)
			VALUES ($1, $2, $3, $4, 1, $5, 5, now(), $6)`, mbox, id, folder, uid, flags, blob)
		return err
	}
	if err := insert("m1", 1, []string{`\Seen`}, "k1"); err != nil {
		t.Fatalf("a valid message: %v", err)
	}
	for name, err := range map[string]error{
		"no blob row":  insert("m2", 2, nil, "missing"),
		"uid 0":        insert("m3", 0, nil, "k1"),
		"uid 2^32":     insert("m4", 1<<32, nil, "k1"),
		"bad flag":     insert("m5", 5, []string{`\Recent`}, "k1"),
		"same uid":     insert("m6", 1, nil, "k1"),
		"same id":      insert("m1", 7, nil, "k1"),
		"id with ' '":  insert("a b", 8, nil, "k1"),
		"mailbox name": func() error { _, err := p.Exec(ctx, "INSERT INTO mailboxes (name) VALUES ('Bad/Name')"); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Two recipients' rows share one blob; it cannot go while referred to.
	if _, err := p.Exec(ctx, "DELETE FROM blobs WHERE key = 'k1'"); err == nil {
		t.Error("a blob still referred to was deleted")
	}
}

// Connect turns synchronous_commit on even where the database's default
// is off.
func TestConnectSynchronousCommit(t *testing.T) {
	dsn := engines.Postgres(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	if _, err := pool(t, dsn).Exec(ctxT(t), "ALTER DATABASE "+db+" SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := pool(t, dsn).QueryRow(ctxT(t), "SHOW synchronous_commit").Scan(&v); err != nil || v != "on" {
		t.Fatalf("synchronous_commit = %q (err %v), want on", v, err)
	}
	if _, err := Connect(ctxT(t), "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
}

// A pool outlives a PostgreSQL restart: calls fail while it is down and
// work again once it is back, with no new pool.
func TestPoolAcrossRestart(t *testing.T) {
	c := engines.NewPostgres(t)
	p := pool(t, c.CreateDatabase(t))
	if _, err := Migrate(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	short, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Version(short, p); err == nil {
		t.Fatal("Version succeeded with PostgreSQL stopped")
	}
	c.Start(t)
	// The pool drops the connections the stop broke as they fail; a
	// few calls may meet one before a fresh connection is made.
	var v int
	var err error
	for range 10 {
		if v, err = Version(ctxT(t), p); err == nil {
			break
		}
	}
	if err != nil || v != Latest() {
		t.Fatalf("after restart: version %d, err %v", v, err)
	}
}
