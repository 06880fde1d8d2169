package shared

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/s3blob"
	"postoffice/internal/testsupport/engines"
)

// A message delivered to several mailboxes (one named twice) is one blob
// row and one row per distinct mailbox, read back byte-exactly with its
// id and size on another node.
func TestDeliverReadBack(t *testing.T) {
	e := sharedEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	text := msg("hello", "body line\r\nsecond")
	id := deliver(t, a, text, "alice", "bob", "alice")
	for _, mb := range []string{"alice", "bob"} {
		l, err := b.List(mb)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != 1 || l[0].ID != id || l[0].Size != int64(len(text)) {
			t.Fatalf("%s: %+v", mb, l)
		}
		rc, err := l[0].Open()
		if got := readAll(t, rc, err); got != text {
			t.Fatalf("%s: read %q, want %q", mb, got, text)
		}
		if want := store.IDTime(id); l[0].Received.UnixNano() != want/1000*1000 {
			t.Errorf("received %v, want the id's time", l[0].Received)
		}
	}
	if n := count(t, e, `SELECT count(*) FROM blobs`); n != 1 {
		t.Errorf("%d blob rows, want 1", n)
	}
	if n := count(t, e, `SELECT count(DISTINCT blob_key) FROM messages`); n != 1 {
		t.Errorf("%d distinct blob keys, want 1", n)
	}
	if n := count(t, e, `SELECT count(*) FROM messages`); n != 2 {
		t.Errorf("%d message rows, want 2", n)
	}
	if u, err := b.Usage("alice"); err != nil || u.Messages != 1 || u.Bytes != int64(len(text)) {
		t.Errorf("usage %+v %v", u, err)
	}
}

type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// A read error from the message's reader is returned wrapped and leaves
// nothing visible: no row, no blob.
func TestDeliverReadError(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	boom := errors.New("client went away")
	err := s.Deliver(ctxT(t), s.NewID(), []string{"alice"}, &failingReader{strings.NewReader(msg("x", "partial")), boom})
	if !errors.Is(err, boom) {
		t.Fatalf("Deliver: %v, want the read error", err)
	}
	if isUnavailable(err) {
		t.Errorf("a client's error reported as the engines': %v", err)
	}
	if got := ids(t, s, "alice"); len(got) != 0 {
		t.Fatalf("visible after a read error: %v", got)
	}
	if n := count(t, e, `SELECT count(*) FROM blobs`); n != 0 {
		t.Errorf("%d blob rows", n)
	}
	var objects int
	if err := s.blobs.List(ctxT(t), "", func(o s3blob.Object) bool { objects++; return true }); err != nil {
		t.Fatal(err)
	}
	if objects != 0 {
		t.Errorf("%d objects left", objects)
	}
}

// 100 concurrent deliveries to one mailbox are all visible with UIDs
// 1..100, uidnext 101, in fewer transactions than deliveries. The test
// holds the folder row until every PUT has returned, so that the
// deliveries queue behind the first transaction and the next ones batch
// them.
func TestDeliverConcurrentGroupCommit(t *testing.T) {
	e := sharedEnv(t)
	var puts atomic.Int64
	s := e.node(t, func(o *Options) {
		o.Timeout = 30 * time.Second
		o.Observe = func(engine, op string, _ time.Duration, err error) {
			if engine == "s3" && op == "put" && err == nil {
				puts.Add(1)
			}
		}
	})
	if err := s.CreateMailbox("alice"); err != nil {
		t.Fatal(err)
	}
	hold, err := e.pool.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctxT(t))
	if _, err := hold.Exec(ctxT(t), `SELECT 1 FROM folders FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Deliver(ctxT(t), s.NewID(), []string{"alice"}, strings.NewReader(msg(fmt.Sprint(i), "x")))
		}()
	}
	for puts.Load() < n {
		select {
		case err := <-errs:
			t.Fatalf("a delivery ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := hold.Commit(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(t, s, "alice"); len(got) != n {
		t.Fatalf("%d visible, want %d", len(got), n)
	}
	if c := count(t, e, `SELECT count(DISTINCT uid) FROM messages WHERE uid BETWEEN 1 AND 100`); c != n {
		t.Errorf("%d distinct UIDs in 1..100", c)
	}
	if c := count(t, e, `SELECT uidnext FROM folders`); c != n+1 {
		t.Errorf("uidnext %d", c)
	}
	if s.commits.batched.Load() == 0 {
		t.Errorf("no transaction held more than one delivery (%d transactions)", s.commits.batches.Load())
	}
	if b := s.commits.batches.Load(); b > 4 {
		t.Errorf("%d transactions for %d deliveries queued together", b, n)
	}
}

// With S3 stopped a delivery fails with ErrUnavailable and leaves
// nothing; once S3 is back, deliveries work with the same store.
func TestDeliverS3Down(t *testing.T) {
	srv := engines.NewS3Server(t)
	e := newEnv(t, engines.Postgres(t), srv.Endpoint, srv.Access, srv.Secret, srv.CreateBucket(t))
	s := e.node(t, nil)
	deliver(t, s, msg("before", "x"), "alice")
	srv.Stop(t)
	err := s.Deliver(ctxT(t), s.NewID(), []string{"alice"}, strings.NewReader(msg("during", "x")))
	if !isUnavailable(err) {
		t.Fatalf("Deliver with S3 stopped: %v, want ErrUnavailable", err)
	}
	if err := s.Probe(); err == nil || !strings.Contains(err.Error(), "S3") {
		t.Errorf("Probe with S3 stopped: %v", err)
	}
	srv.Start(t)
	deliver(t, s, msg("after", "x"), "alice")
	if got := ids(t, s, "alice"); len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
	if err := s.Probe(); err != nil {
		t.Errorf("Probe: %v", err)
	}
}

// With PostgreSQL stopped a delivery fails with ErrUnavailable; started
// again, deliveries work with the same store, and the failed one left no
// row.
func TestDeliverPostgresDown(t *testing.T) {
	c := engines.NewPostgres(t)
	ep, ak, sk, b := engines.S3(t)
	e := newEnv(t, c.CreateDatabase(t), ep, ak, sk, b)
	s := e.node(t, func(o *Options) { o.Timeout = 3 * time.Second })
	deliver(t, s, msg("before", "x"), "alice")
	c.Stop(t)
	failed := s.NewID()
	err := s.Deliver(ctxT(t), failed, []string{"alice"}, strings.NewReader(msg("during", "x")))
	if !isUnavailable(err) {
		t.Fatalf("Deliver with PostgreSQL stopped: %v, want ErrUnavailable", err)
	}
	if err := s.Probe(); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("Probe with PostgreSQL stopped: %v", err)
	}
	c.Start(t)
	// The pools drop the connections the stop broke as they fail.
	for range 10 {
		if err = s.Deliver(ctxT(t), s.NewID(), []string{"alice"}, strings.NewReader(msg("after", "x"))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	got := ids(t, s, "alice")
	if len(got) != 2 || slices.Contains(got, failed) {
		t.Fatalf("after restart: %v", got)
	}
}

// A delivery that cannot commit (its id is already in the mailbox) fails
// alone: the deliveries batched with it are committed.
func TestDeliverBadMemberFailsAlone(t *testing.T) {
	e := sharedEnv(t)
	var mu sync.Mutex
	ops := map[string]int{}
	s := e.node(t, func(o *Options) {
		o.Observe = func(engine, op string, _ time.Duration, _ error) {
			mu.Lock()
			ops[engine+" "+op]++
			mu.Unlock()
		}
	})
	dup := deliver(t, s, msg("first", "x"), "alice")
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := s.NewID()
			if i == n/2 {
				id = dup
			}
			errs[i] = s.Deliver(ctxT(t), id, []string{"alice"}, strings.NewReader(msg(fmt.Sprint(i), "x")))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == n/2) {
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	if got := ids(t, s, "alice"); len(got) != n {
		t.Fatalf("%d visible, want %d", len(got), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if ops["s3 put"] != n+1 || ops["pg deliver"] < 2 {
		t.Errorf("observed %v", ops)
	}
}

// Deliveries still work after Close (committed one by one).
func TestDeliverAfterClose(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	id := deliver(t, s, msg("late", "x"), "alice")
	if got := ids(t, s, "alice"); !slices.Equal(got, []string{id}) {
		t.Fatalf("%v", got)
	}
}
