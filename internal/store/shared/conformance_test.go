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
	core, ok := v.(coreStore)
	if !ok {
		t.Skip("shared.Store does not implement the core of store.Store yet")
	}
	t.Cleanup(func() { core.Close() })
	st, ok := v.(store.Store)
	if !ok {
		st = partial{coreStore: core}
	}
	b := s.Browser()
	return storetest.View{Store: st, Browser: b, Arrivals: b}
}

// coreStore is store.Store without Folders: what the shared store had
// before its folder part was merged.
type coreStore interface {
	store.Deliverer
	store.MaildropOpener
	store.Events
	store.Admin
	store.Lifecycle
}

// partial makes a store.Store of a coreStore; the subtests that would call
// its (nil) Folders are skipped (needsFolders).
type partial struct {
	coreStore
	store.Folders
}

// needsFolders and needsBrowser are the subtests that use the parts the
// shared store may not have yet.
var (
	needsFolders = []string{"Folders", "Events/FolderChanges", "Arrivals/OnlyInbox"}
	needsBrowser = []string{"Browser", "Arrivals"} // before Store.Browser existed
)

func missingParts(v storetest.View) map[string]string {
	skip := map[string]string{}
	if _, ok := v.Store.(partial); ok {
		for _, n := range needsFolders {
			skip[n] = "shared.Store does not implement store.Folders yet"
		}
	}
	if v.Browser == nil {
		for _, n := range needsBrowser {
			skip[n] = "shared.Store does not implement store.Browser yet"
		}
	}
	return skip
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
		a, b := openNode(t, dsn, cfg, "node-a"), openNode(t, dsn, cfg, "node-b")
		return storetest.Pair{A: a, B: b, CrossEvents: true, Skip: missingParts(a)}
	})
}
