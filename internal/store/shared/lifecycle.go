package shared

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/s3blob"
)

var osHostname = os.Hostname

// sweeperStatus is the outcome of the last sweep.
type sweeperStatus struct {
	mu   sync.Mutex
	last time.Time
	err  error
}

// start starts the background parts: the notification listener (before
// Open returns), the commit batcher, the lease renewer, the sweeper.
func (s *Store) start(ctx context.Context) error {
	s.commits = &committer{queue: make(chan *delivery)}
	s.leases = &leaseKeeper{held: make(map[string]int64)}
	if s.opts.CacheBytes > 0 {
		s.cache = newBlobCache(s.opts.CacheBytes)
	}
	if err := s.startNotifier(ctx); err != nil {
		return err
	}
	s.bg.Add(2)
	go s.commitLoop()
	go s.renewLoop()
	if s.opts.SweepInterval > 0 {
		s.bg.Add(1)
		go s.sweepLoop()
	}
	return nil
}

func (s *Store) sweepLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.sweep(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("shared: orphan sweep", "removed", n, "err", err)
		} else if n > 0 {
			s.log.Info("shared: orphan sweep", "removed", n)
		}
	}
}

// Recover implements store.Lifecycle: the orphan sweep.
func (s *Store) Recover() (int, error) { return s.sweep(context.Background()) }

// sweep removes the objects under s3blob.KeyPrefix older than
// SweepGrace without a blobs row (a delivery cut off between its PUT and
// its commit, or a blob collected between its row and its object), and
// the blobs older than the grace that no message refers to (object
// first, then row). Objects newer than the grace may belong to a
// delivery about to commit and are kept.
func (s *Store) sweep(ctx context.Context) (removed int, err error) {
	defer func() {
		s.sweepErr.mu.Lock()
		s.sweepErr.last, s.sweepErr.err = time.Now(), err
		s.sweepErr.mu.Unlock()
	}()
	cutoff := time.Now().Add(-s.opts.SweepGrace)
	var old []string
	lctx, cancel := context.WithTimeout(ctx, s.opts.Timeout*30)
	start := time.Now()
	err = s.blobs.List(lctx, s3blob.KeyPrefix, func(o s3blob.Object) bool {
		if o.LastModified.Before(cutoff) {
			old = append(old, o.Key)
		}
		return true
	})
	cancel()
	s.observe("s3", "list", start, err)
	if err != nil {
		return 0, unavailable("sweep: list objects", err)
	}
	for len(old) > 0 {
		chunk := old[:min(len(old), 1000)]
		old = old[len(chunk):]
		known := map[string]bool{}
		qctx, cancel := s.call(ctx)
		start := time.Now()
		rows, err := s.pool.Query(qctx, `SELECT key FROM blobs WHERE key = ANY($1)`, chunk)
		if err == nil {
			for rows.Next() {
				var k string
				if err = rows.Scan(&k); err != nil {
					break
				}
				known[k] = true
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		cancel()
		s.observe("pg", "sweep", start, err)
		if err != nil {
			return removed, unavailable("sweep: blobs", err)
		}
		for _, k := range chunk {
			if known[k] {
				continue
			}
			if err := s.deleteBlob(ctx, k); err != nil {
				return removed, unavailable("sweep: delete "+k, err)
			}
			removed++
		}
	}
	// Blobs no message refers to any more.
	for {
		qctx, cancel := s.call(ctx)
		start := time.Now()
		var keys []string
		rows, err := s.pool.Query(qctx, `SELECT key FROM blobs b WHERE created < $1
			AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_key = b.key) LIMIT 500`, cutoff)
		if err == nil {
			for rows.Next() {
				var k string
				if err = rows.Scan(&k); err != nil {
					break
				}
				keys = append(keys, k)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		cancel()
		s.observe("pg", "sweep", start, err)
		if err != nil {
			return removed, unavailable("sweep: unreferenced blobs", err)
		}
		if len(keys) == 0 {
			return removed, nil
		}
		for _, k := range keys {
			if err := s.deleteBlob(ctx, k); err != nil {
				return removed, unavailable("sweep: delete "+k, err)
			}
			dctx, cancel := s.call(ctx)
			start := time.Now()
			_, err := s.pool.Exec(dctx, `DELETE FROM blobs WHERE key = $1
				AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_key = $1)`, k)
			cancel()
			s.observe("pg", "sweep", start, err)
			if err != nil {
				return removed, unavailable("sweep: delete row "+k, err)
			}
			removed++
		}
	}
}

// Probe implements store.Lifecycle: PostgreSQL answers and the bucket is
// there, each within Timeout.
func (s *Store) Probe() error {
	ctx, cancel := s.call(context.Background())
	start := time.Now()
	err := s.pool.Ping(ctx)
	cancel()
	s.observe("pg", "ping", start, err)
	if err != nil {
		return fmt.Errorf("shared: PostgreSQL: %w (%w)", store.ErrUnavailable, err)
	}
	ctx, cancel = s.call(context.Background())
	start = time.Now()
	_, err = s.blobs.Size(ctx, s3blob.KeyPrefix+"probe")
	cancel()
	if errors.Is(err, s3blob.ErrNotFound) {
		err = nil
	}
	s.observe("s3", "probe", start, err)
	if err != nil {
		return fmt.Errorf("shared: S3 bucket: %w (%w)", store.ErrUnavailable, err)
	}
	return nil
}

// FreeSpace implements store.Lifecycle: the shared store has no local
// disk to watch.
func (s *Store) FreeSpace() error { return nil }

// Close implements store.Lifecycle: it stops the background work and
// releases this node's maildrop leases. The pool and the S3 client are
// the caller's. Deliveries after Close commit one by one.
func (s *Store) Close() error {
	s.cancel()
	s.bg.Wait()
	s.releaseAll()
	return nil
}
