package shared

import (
	"errors"
	"strings"
	"testing"
	"time"

	"postoffice/internal/store/s3blob"
)

// The sweep removes an object without a row older than the grace and a
// blob no message refers to, and keeps a newer orphan and the blobs
// messages refer to.
func TestSweep(t *testing.T) {
	e := sharedEnv(t)
	grace := 2 * time.Second
	s := e.node(t, func(o *Options) { o.SweepGrace = grace })
	kept := deliver(t, s, msg("kept", "x"), "alice")
	old := s3blob.NewKey("orphan-old")
	if _, err := s.blobs.Put(ctxT(t), old, strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	unref := s3blob.NewKey("unreferenced")
	if _, err := s.blobs.Put(ctxT(t), unref, strings.NewReader("unref")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctxT(t), `INSERT INTO blobs (key, size, created) VALUES ($1, 5, now() - interval '1 hour')`, unref); err != nil {
		t.Fatal(err)
	}
	// Object times have a resolution of a second: wait out the grace.
	time.Sleep(grace + 1500*time.Millisecond)
	young := s3blob.NewKey("orphan-young")
	if _, err := s.blobs.Put(ctxT(t), young, strings.NewReader("young")); err != nil {
		t.Fatal(err)
	}
	n, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("removed %d, want 2", n)
	}
	for key, want := range map[string]bool{old: false, unref: false, young: true} {
		_, err := s.blobs.Size(ctxT(t), key)
		if got := !errors.Is(err, s3blob.ErrNotFound); got != want {
			t.Errorf("%s: present %v, want %v (%v)", key, got, want, err)
		}
	}
	if c := count(t, e, `SELECT count(*) FROM blobs WHERE key = $1`, unref); c != 0 {
		t.Error("unreferenced blob row kept")
	}
	l, err := s.List("alice")
	if err != nil || len(l) != 1 || l[0].ID != kept {
		t.Fatalf("list %v %v", l, err)
	}
	rc, err := l[0].Open()
	if got := readAll(t, rc, err); got != msg("kept", "x") {
		t.Fatalf("kept message %q", got)
	}
}

// With a cache, a small blob read twice is served from it the second
// time, byte-exactly; a range is read from S3.
func TestBlobCacheAndRange(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, func(o *Options) { o.CacheBytes = 1 << 20 })
	text := msg("cached", "0123456789")
	deliver(t, s, text, "alice")
	l, err := s.List("alice")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		rc, err := l[0].Open()
		if got := readAll(t, rc, err); got != text {
			t.Fatalf("read %q", got)
		}
	}
	if s.cache.hits != 1 {
		t.Errorf("%d cache hits, want 1", s.cache.hits)
	}
	var key string
	if err := e.pool.QueryRow(ctxT(t), `SELECT blob_key FROM messages`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	rc, err := s.openBlob(ctxT(t), key, true, int64(len(text)), 5, 10)
	if got := readAll(t, rc, err); got != text[5:15] {
		t.Fatalf("range %q", got)
	}
}
