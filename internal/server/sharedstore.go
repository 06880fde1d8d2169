package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"postoffice/internal/backend"
	"postoffice/internal/config"
	"postoffice/internal/store"
	"postoffice/internal/store/pg"
	"postoffice/internal/store/s3blob"
	"postoffice/internal/store/shared"
)

// browser is what the web inbox, IMAP's SEARCH and FETCH and the webhook
// need of a store's browsing view: the Maildir's index, or the shared
// store's Browser.
type browser interface {
	store.Browser
	SearchIDs(mailbox, folder string, q store.Query) (map[string]bool, error)
	Precomputed(mailbox, folder string, ids []string) (map[string][]byte, error)
	Close()
}

// OpenShared opens the shared store of cfg (--store postgres): the
// PostgreSQL pool, the schema migrated up to what this binary knows
// (under the runner's advisory lock, so nodes may start together; a newer
// schema is an error), the S3 bucket, and the store on them. observe gets
// every engine call (the metrics); nil is none. The caller closes the
// store, then the pool.
func OpenShared(ctx context.Context, cfg config.Config, log *slog.Logger, observe func(engine, op string, took time.Duration, err error)) (*shared.Store, *pgxpool.Pool, error) {
	cctx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
	defer cancel()
	pool, err := pg.Connect(cctx, cfg.PGURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Setting("pg-url"), err)
	}
	mctx, mcancel := context.WithTimeout(ctx, max(cfg.StoreTimeout, time.Minute))
	applied, err := pg.Migrate(mctx, pool)
	mcancel()
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("%s: schema: %w", cfg.Setting("pg-url"), err)
	}
	if len(applied) > 0 {
		log.Info("shared store: schema migrated", "applied", applied, "version", pg.Latest())
	}
	blobs, err := s3blob.New(s3blob.Config{
		Endpoint: cfg.S3Endpoint, Access: cfg.S3AccessKey, Secret: cfg.S3SecretKey,
		Bucket: cfg.S3Bucket, Region: cfg.S3Region, MaxRetries: 2,
	})
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("%s: %w", cfg.Setting("s3-endpoint"), err)
	}
	st, err := shared.Open(ctx, shared.Options{
		Pool: pool, Blobs: blobs, DSN: cfg.PGURL, Node: cfg.NodeName, Logger: log,
		Timeout: cfg.StoreTimeout, Precompute: backend.PrecomputeFetch,
		CacheBytes: int64(cfg.BlobCacheSize), Observe: observe,
		SweepGrace: cfg.SweepGrace, SweepInterval: cfg.SweepInterval,
	})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return st, pool, nil
}

// openShared is openStore for --store postgres: the shared store is also
// its own browser.
func (s *Server) openShared() error {
	if s.cfg.IndexDisable {
		s.log.Warn("setting not used with --store postgres", "setting", "index-disable")
	}
	st, pool, err := OpenShared(context.Background(), s.cfg, s.log, s.metrics.StoreRequest)
	if err != nil {
		return err
	}
	s.store, s.index, s.pool = st, st.Browser(), pool
	s.log.Info("shared store open", "node", st.Node(), "bucket", s.cfg.S3Bucket)
	return nil
}
