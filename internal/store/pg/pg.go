// Package pg is the PostgreSQL half of the shared store (issue 18): the
// connection pool and the schema, as embedded numbered migrations applied
// by a small runner (migrate.go). It holds no store logic yet and nothing
// of the server uses it; docs/design.md, "Shared store (issue 18):
// groundwork", says what it is for.
package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool of connections to the database at dsn (a
// postgres:// URL or key=value string) with synchronous_commit on for every
// session, whatever the server's default: a commit returns only once its
// WAL is flushed. It checks that the database answers.
func Connect(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pg: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "postoffice"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pg: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pg: %w", err)
	}
	return pool, nil
}
