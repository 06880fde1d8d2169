package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"postoffice/internal/store"
	"postoffice/internal/store/pg"
	"postoffice/internal/store/s3blob"
	"postoffice/internal/testsupport/engines"
)

func TestMain(m *testing.M) { engines.Main(m) }

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// env is one database and one bucket: the engines several nodes share.
type env struct {
	dsn  string
	pool *pgxpool.Pool
	s3   s3blob.Config
}

func newEnv(t *testing.T, dsn string, endpoint, access, secret, bucket string) *env {
	t.Helper()
	p, err := pg.Connect(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if _, err := pg.Migrate(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	return &env{dsn: dsn, pool: p, s3: s3blob.Config{Endpoint: endpoint, Access: access, Secret: secret, Bucket: bucket, MaxRetries: 1}}
}

// sharedEnv is an env on the shared engines.
func sharedEnv(t *testing.T) *env {
	ep, ak, sk, b := engines.S3(t)
	return newEnv(t, engines.Postgres(t), ep, ak, sk, b)
}

// node opens a Store (a node) on e, with a pool of its own, closed when
// t ends. edit changes its options.
func (e *env) node(t *testing.T, edit func(*Options)) *Store {
	t.Helper()
	p, err := pg.Connect(ctxT(t), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c, err := s3blob.New(e.s3)
	if err != nil {
		t.Fatal(err)
	}
	// Two Stores of one process need names of their own (the default
	// name is per process).
	nodes++
	opts := Options{Pool: p, Blobs: c, DSN: e.dsn, Timeout: 5 * time.Second, SweepInterval: -1,
		Node: fmt.Sprintf("test-node-%d", nodes)}
	if edit != nil {
		edit(&opts)
	}
	s, err := Open(ctxT(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var nodes int

func msg(subject, body string) string {
	return "From: a@example.org\r\nTo: b@example.org\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
}

func deliver(t *testing.T, s *Store, text string, mailboxes ...string) string {
	t.Helper()
	id := s.NewID()
	if err := s.Deliver(ctxT(t), id, mailboxes, strings.NewReader(text)); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	return id
}

func readAll(t *testing.T, rc io.ReadCloser, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func count(t *testing.T, e *env, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(ctxT(t), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func ids(t *testing.T, s *Store, mailbox string) []string {
	t.Helper()
	l, err := s.List(mailbox)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range l {
		out = append(out, m.ID)
	}
	return out
}

// events subscribes to s's events into a channel.
func events(t *testing.T, s *Store) chan store.Event {
	ch := make(chan store.Event, 1000)
	cancel := s.Subscribe(func(ev store.Event) {
		select {
		case ch <- ev:
		default:
		}
	})
	t.Cleanup(cancel)
	return ch
}

// waitEvent waits for an event that match accepts.
func waitEvent(t *testing.T, ch chan store.Event, match func(store.Event) bool) store.Event {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev := <-ch:
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatal("no matching event")
		}
	}
}

func isUnavailable(err error) bool { return errors.Is(err, store.ErrUnavailable) }
