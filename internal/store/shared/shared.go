// Package shared is the shared store (issue 18): every mailbox of several
// Postoffice nodes kept on engines that already solve distribution.
// PostgreSQL (internal/store/pg: the schema and its migrations) holds
// everything mutable: mailboxes, folders, messages with their UIDs, flags
// and summaries, the POP3 maildrop leases; an S3-compatible object store
// (internal/store/s3blob) holds message bodies, one immutable object per
// SMTP transaction shared by its recipients' rows. Nodes learn of each
// other's changes through LISTEN/NOTIFY. It implements store.Store,
// store.Browser and store.Arrivals, so the protocol engines and the web
// inbox do not know which store runs.
//
// The files: shared.go (Options, Open, the helpers every part uses),
// deliver.go (Deliverer, group commit), maildrop.go (POP3 leases),
// admin.go (Admin), lifecycle.go (Lifecycle, the orphan sweeper),
// notify.go (LISTEN/NOTIFY into the event hub), folders.go and folder.go
// (IMAP's Folders), browser.go (Browser, Arrivals, search), blobs.go
// (reading blobs, the local cache).
package shared

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"postoffice/internal/store"
	"postoffice/internal/store/pg"
	"postoffice/internal/store/s3blob"
)

// DefaultTimeout is Options.Timeout when it is zero.
const DefaultTimeout = 10 * time.Second

// Options configure a shared store.
type Options struct {
	// Pool is the PostgreSQL pool (pg.Connect); Blobs the bucket. Both
	// required. The store does not close them.
	Pool  *pgxpool.Pool
	Blobs *s3blob.Client
	// DSN is the URL Pool was made from: the notification listener opens
	// a connection of its own with it. Required.
	DSN string
	// Node names this process among the nodes (lease holder, the sender
	// of notifications); "" makes one from the host name and a random
	// suffix.
	Node string
	// Logger; nil is slog.Default().
	Logger *slog.Logger
	// Timeout bounds every call to PostgreSQL or S3 that has no deadline
	// of its own (0: DefaultTimeout).
	Timeout time.Duration
	// Precompute, when set, is applied to each message at delivery and
	// kept with its row (backend.PrecomputeFetch), as the Maildir's
	// index does.
	Precompute func(raw []byte) []byte
	// CacheBytes bounds the local cache of blobs read (0: no cache).
	CacheBytes int64
	// SweepGrace is how old an object without a row must be before the
	// sweeper removes it (0: one hour).
	SweepGrace time.Duration
	// Observe, when set, is called after each PostgreSQL or S3 call with
	// its engine ("pg" or "s3"), operation, duration and error (the
	// metrics).
	Observe func(engine, op string, took time.Duration, err error)

	// Core parts (deliver.go, maildrop.go, lifecycle.go).
	//
	// LeaseTTL is how long a POP3 maildrop lease lasts unless its node
	// renews it (every LeaseTTL/3); a dead node's lease expires after it
	// (0: DefaultLeaseTTL).
	LeaseTTL time.Duration
	// SweepInterval is how often the orphan sweeper runs (0: ten
	// minutes; negative: only at Recover).
	SweepInterval time.Duration
	// MaxBatch bounds the deliveries committed in one transaction (0:
	// DefaultMaxBatch).
	MaxBatch int
}

// Store is the shared store. Open makes one; Close releases it.
type Store struct {
	opts  Options
	pool  *pgxpool.Pool
	blobs *s3blob.Client
	log   *slog.Logger
	node  string

	hub store.Hub

	// mailboxes caches mailbox ids by name (a mailbox row is never
	// renamed; a deleted mailbox is never reused by id).
	mailboxes sync.Map // string -> int64

	// states holds the last FolderState read of each folder (by folder
	// id), shared by the Folders of this node.
	states sync.Map // int64 -> *store.FolderState

	ctx    context.Context // cancelled by Close: the background work
	cancel context.CancelFunc
	bg     sync.WaitGroup

	// Parts filled by the other files.
	notify   *notifier     // notify.go
	commits  *committer    // deliver.go
	cache    *blobCache    // blobs.go; nil without Options.CacheBytes
	leases   *leaseKeeper  // maildrop.go
	sweepErr sweeperStatus // lifecycle.go
}

// Open opens the shared store on opts' engines. The schema must be at
// pg.Latest() (pg.Migrate applies it; Open does not migrate, so that an
// operator decides when the schema changes): an older or newer one is an
// error. It starts the notification listener, the commit batcher, the
// lease renewer and the orphan sweeper.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Pool == nil || opts.Blobs == nil || opts.DSN == "" {
		return nil, errors.New("shared: Pool, Blobs and DSN are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.SweepGrace <= 0 {
		opts.SweepGrace = time.Hour
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = 10 * time.Minute
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Node == "" {
		opts.Node = defaultNode()
	}
	v, err := pg.Version(ctx, opts.Pool)
	if err != nil {
		return nil, unavailable("schema version", err)
	}
	if v != pg.Latest() {
		return nil, fmt.Errorf("shared: the database schema is at version %d, this Postoffice needs %d (run postoffice migrate --schema)", v, pg.Latest())
	}
	s := &Store{opts: opts, pool: opts.Pool, blobs: opts.Blobs, log: opts.Logger, node: opts.Node}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.start(ctx); err != nil {
		s.cancel()
		s.bg.Wait()
		return nil, err
	}
	return s, nil
}

// Node returns the name of this node.
func (s *Store) Node() string { return s.node }

// Subscribe implements store.Events: changes made through this store and,
// through LISTEN/NOTIFY, those of every other node on the same database.
func (s *Store) Subscribe(fn func(store.Event)) (cancel func()) { return s.hub.Subscribe(fn) }

// NewID implements store.Deliverer.
func (s *Store) NewID() string { return store.NewID() }

// call returns a context for one call to an engine: ctx bounded by
// Options.Timeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// observe reports one engine call to Options.Observe.
func (s *Store) observe(engine, op string, start time.Time, err error) {
	if s.opts.Observe != nil {
		s.opts.Observe(engine, op, time.Since(start), err)
	}
}

// querier is what both a pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// mailboxID returns the id of mailbox, creating its row (and its INBOX
// folder) when create is set; without create, a mailbox that does not
// exist is ErrNotFound.
func (s *Store) mailboxID(ctx context.Context, mailbox string, create bool) (int64, error) {
	if !store.ValidMailboxName(mailbox) {
		return 0, store.ErrBadMailbox
	}
	if v, ok := s.mailboxes.Load(mailbox); ok {
		return v.(int64), nil
	}
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM mailboxes WHERE name = $1`, mailbox).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		if !create {
			return 0, store.ErrNotFound
		}
		id, err = s.createMailbox(ctx, mailbox)
	}
	if err != nil {
		return 0, unavailable("mailbox", err)
	}
	s.mailboxes.Store(mailbox, id)
	return id, nil
}

// createMailbox inserts mailbox and its INBOX (UIDVALIDITY from the
// clock, as the Maildir's) unless another node just did, and returns its
// id.
func (s *Store) createMailbox(ctx context.Context, mailbox string) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO mailboxes (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, mailbox); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT id FROM mailboxes WHERE name = $1`, mailbox).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO folders (mailbox_id, name, uidvalidity) VALUES ($1, $2, $3)
			ON CONFLICT (mailbox_id, name) DO NOTHING`, id, store.Inbox, NewUIDValidity())
		return err
	})
	return id, err
}

// inboxID returns the id of the INBOX folder of mailbox id mbox.
func inboxID(ctx context.Context, q querier, mbox int64) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT id FROM folders WHERE mailbox_id = $1 AND name = $2`, mbox, store.Inbox).Scan(&id)
	return id, err
}

// uidValidityBase: UIDVALIDITY is seconds since this moment, so that a
// folder re-created later gets a larger one (RFC 9051 §2.3.1.1: it must
// change when UIDs are reused).
var uidValidityBase = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

var uidValidityMu sync.Mutex
var lastUIDValidity uint32

// NewUIDValidity returns a fresh UIDVALIDITY: strictly increasing within
// the process, from the clock across processes.
func NewUIDValidity() uint32 {
	uidValidityMu.Lock()
	defer uidValidityMu.Unlock()
	v := uint32(time.Since(uidValidityBase) / time.Second)
	if v <= lastUIDValidity {
		v = lastUIDValidity + 1
	}
	if v == 0 {
		v = 1
	}
	lastUIDValidity = v
	return v
}

// unavailable wraps an engine failure as store.ErrUnavailable, saying
// what was being done. Errors that are answers (no rows, a constraint)
// are not failures of the engine: callers handle those before.
func unavailable(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadMailbox) {
		return err
	}
	return fmt.Errorf("shared: %s: %w (%w)", what, store.ErrUnavailable, err)
}

// isUnique reports whether err is a unique-constraint violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// defaultNode names this node: the host name and a random suffix, so two
// processes on one host differ.
func defaultNode() string {
	host := "node"
	if h, err := osHostname(); err == nil && h != "" {
		host = strings.Map(func(r rune) rune {
			if r <= ' ' || r > '~' {
				return '_'
			}
			return r
		}, h)
	}
	return host + "-" + store.NewID()[17:]
}

// isNetErr reports whether err comes from the network (the engine is not
// reachable) rather than from the engine's answer.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
