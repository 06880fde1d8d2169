package shared_test

import (
	"context"
	"testing"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/pg"
	"postoffice/internal/store/s3blob"
	"postoffice/internal/store/shared"
	"postoffice/internal/store/storetest"
	"postoffice/internal/testsupport/engines"
)

// openNode opens one node of the shared store on dsn and the bucket.
func openNode(t *testing.T, dsn string, cfg s3blob.Config, node string) storetest.View {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	blobs, err := s3blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := shared.Open(ctx, shared.Options{Pool: pool, Blobs: blobs, DSN: dsn, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	// Checked at run time, so that this file compiles while the shared
	// store is being completed.
	var v any = s
	st, ok := v.(store.Store)
	if !ok {
		t.Skip("shared.Store does not implement store.Store yet")
	}
	t.Cleanup(func() { st.Close() })
	br, ok := v.(store.Browser)
	if !ok {
		t.Skip("shared.Store does not implement store.Browser yet")
	}
	arr, _ := v.(store.Arrivals)
	return storetest.View{Store: st, Browser: br, Arrivals: arr}
}

// TestConformance runs the store conformance suite on two nodes of one
// shared store (one database, one bucket).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Pair {
		dsn := engines.Postgres(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pool, err := pg.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if _, err := pg.Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
		ep, ak, sk, bucket := engines.S3(t)
		cfg := s3blob.Config{Endpoint: ep, Access: ak, Secret: sk, Bucket: bucket, MaxRetries: 2}
		return storetest.Pair{
			A:           openNode(t, dsn, cfg, "node-a"),
			B:           openNode(t, dsn, cfg, "node-b"),
			CrossEvents: true,
		}
	})
}
