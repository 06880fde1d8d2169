package pg

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered SQL file of migrations/: NNNN_name.sql.
type Migration struct {
	Version  int
	Name     string // the file name
	SQL      string
	Checksum string // hex SHA-256 of SQL, recorded when applied
}

// migrationLockKey is the advisory lock (pg_advisory_lock) migrators hold:
// two nodes starting together apply each migration once, in turn.
const migrationLockKey int64 = 0x706f73746f666663 // "postoffc"

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// Migrations returns the embedded migrations, by version. Versions are
// 1, 2, 3... without gaps.
func Migrations() ([]Migration, error) { return parseMigrations(migrationFiles, "migrations") }

func parseMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("pg: migration file %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, dir+"/"+e.Name())
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("pg: migration %s: version %d, want %d (no gaps or duplicates)", m.Name, m.Version, i+1)
		}
	}
	return ms, nil
}

// Latest is the schema version this binary's migrations reach.
func Latest() int {
	ms, err := Migrations()
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return len(ms)
}

// ErrSchemaNewer: the database has migrations this binary does not know
// (a newer Postoffice migrated it).
var ErrSchemaNewer = errors.New("pg: the database schema is newer than this binary")

// Migrate brings the schema of the database up to Latest and returns the
// versions it applied (none when it was up to date). It holds an advisory
// lock meanwhile, so concurrent migrators wait for each other; each
// migration runs in its own transaction with its row in
// schema_migrations, so a failed one leaves the schema at the previous
// version. It refuses a database whose applied migrations differ from the
// embedded ones (ErrSchemaNewer, or a changed checksum).
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	return migrate(ctx, pool, migrationFiles, "migrations")
}

func migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, dir string) ([]int, error) {
	ms, err := parseMigrations(fsys, dir)
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pg: migrate: %w", err)
	}
	defer conn.Release()
	// A session lock on this pinned connection: released by the unlock
	// below, or by the server when the connection drops.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return nil, fmt.Errorf("pg: migrate: lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		checksum   text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("pg: migrate: %w", err)
	}
	applied, err := appliedMigrations(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	for v, sum := range applied {
		if v > len(ms) {
			return nil, fmt.Errorf("%w: it is at version %d, this binary knows %d", ErrSchemaNewer, maxKey(applied), len(ms))
		}
		if m := ms[v-1]; m.Checksum != sum {
			return nil, fmt.Errorf("pg: migration %s was applied with other content (checksum %s, now %s)", m.Name, sum, m.Checksum)
		}
	}
	var done []int
	for _, m := range ms {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("pg: migration %s: %w", m.Name, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}

func maxKey(m map[int]string) int {
	n := 0
	for k := range m {
		n = max(n, k)
	}
	return n
}

func appliedMigrations(ctx context.Context, conn *pgx.Conn) (map[int]string, error) {
	rows, err := conn.Query(ctx, "SELECT version, checksum FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("pg: migrate: %w", err)
	}
	applied := map[int]string{}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, err
		}
		applied[v] = sum
	}
	return applied, rows.Err()
}

// Version returns the schema version of the database: the highest applied
// migration, 0 for a database never migrated (for "postoffice check",
// which compares it with Latest).
func Version(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var v int
	err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pg: schema version: %w", err)
	}
	return v, nil
}
