package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
)

// DefaultMaxBatch is Options.MaxBatch when it is zero.
const DefaultMaxBatch = 64

// committer batches the transactions of concurrent deliveries (group
// commit): one goroutine takes the deliveries waiting for it, commits
// them in one transaction and answers each; when the queue is empty it
// does not wait for more.
type committer struct {
	queue chan *delivery
	// batches counts committed transactions, batched those of more than
	// one delivery (tests and metrics).
	batches, batched atomic.Int64
}

// delivery is one Deliver call waiting for its commit.
type delivery struct {
	id       string
	names    []string
	mboxes   []int64
	key      string
	size     int64
	desc     index.Description
	received time.Time
	done     chan error
}

// readErr records the error of the message's reader, so that Deliver
// tells a client's failure from an engine's.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// head keeps the first max bytes written to it.
type head struct {
	buf []byte
	max int
	n   int64
}

func (h *head) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Deliver implements store.Deliverer: the message is streamed into one
// new object (never held whole in memory), then one transaction records
// the blob and a row in the INBOX of each distinct mailbox. It returns
// nil only after that transaction committed (synchronous_commit is on).
// A failure of either engine is an error wrapping store.ErrUnavailable
// and leaves nothing visible (at most an object without a row, which the
// sweeper removes).
func (s *Store) Deliver(ctx context.Context, id string, mailboxes []string, r io.Reader) error {
	if id == "" || len(id) > 70 {
		return fmt.Errorf("shared: deliver: bad id %q", id)
	}
	var names []string
	for _, m := range mailboxes {
		if !store.ValidMailboxName(m) {
			return fmt.Errorf("shared: deliver to %q: %w", m, store.ErrBadMailbox)
		}
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	if len(names) == 0 {
		return errors.New("shared: deliver: no mailbox")
	}
	d := &delivery{id: id, names: names, done: make(chan error, 1)}
	for _, m := range names {
		mctx, cancel := s.call(ctx)
		start := time.Now()
		mb, err := s.mailboxID(mctx, m, true)
		cancel()
		s.observe("pg", "mailbox", start, err)
		if err != nil {
			return fmt.Errorf("shared: deliver %s to %s: %w", id, m, err)
		}
		d.mboxes = append(d.mboxes, mb)
	}
	h := &head{max: store.MaxSearchBytes}
	re := &readErr{r: r}
	// The blob is the message as the protocols send it (CRLF line ends,
	// ending in CRLF), so that it is read back as it is.
	body := maildir.WireReader(io.TeeReader(re, h), 0)
	pctx, cancel := context.WithTimeout(ctx, s.opts.Timeout*30)
	key, size, err := s.putBlob(pctx, id, body)
	cancel()
	if re.err != nil {
		if err == nil {
			_ = s.deleteBlob(context.Background(), key)
		}
		return fmt.Errorf("shared: deliver %s: reading the message: %w", id, re.err)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("shared: deliver %s: %w", id, ctx.Err())
		}
		return unavailable("deliver "+id+": store the message", err)
	}
	d.key, d.size = key, size
	precompute := s.opts.Precompute
	if h.n > int64(len(h.buf)) {
		precompute = nil // the precomputation needs the whole message
	}
	d.desc, err = index.Describe(h.buf, precompute)
	if err != nil {
		d.desc = index.Description{}
	}
	d.received = time.Now()
	if store.IsNewID(id) {
		d.received = time.Unix(0, store.IDTime(id))
	}
	select {
	case s.commits.queue <- d:
	case <-s.ctx.Done():
		// Closed: commit alone.
		d.done <- s.commitBatch([]*delivery{d})
	}
	if err := <-d.done; err != nil {
		return err
	}
	for _, m := range names {
		s.hub.Publish(store.Event{Kind: store.EventArrived, Mailbox: m, IDs: []string{id}, Size: size})
	}
	return nil
}

// commitLoop is the committer's goroutine.
func (s *Store) commitLoop() {
	defer s.bg.Done()
	q := s.commits.queue
	for {
		var batch []*delivery
		select {
		case d := <-q:
			batch = append(batch, d)
		case <-s.ctx.Done():
			// Deliveries already waiting are committed one by one.
			for {
				select {
				case d := <-q:
					d.done <- s.commitBatch([]*delivery{d})
				default:
					return
				}
			}
		}
	more:
		for len(batch) < s.opts.MaxBatch {
			select {
			case d := <-q:
				batch = append(batch, d)
			default:
				break more
			}
		}
		err := s.commitBatch(batch)
		if err != nil && len(batch) > 1 {
			// One bad delivery must not fail the others.
			for _, d := range batch {
				d.done <- s.commitBatch([]*delivery{d})
			}
			continue
		}
		for _, d := range batch {
			d.done <- err
		}
	}
}

// commitBatch records batch's blobs and messages in one transaction.
func (s *Store) commitBatch(batch []*delivery) error {
	ctx, cancel := s.call(context.Background())
	defer cancel()
	start := time.Now()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		byBox := map[int64][]newMessage{}
		var evs []store.Event
		if len(batch) == 1 {
			if err := insertBlob(ctx, tx, batch[0].key, batch[0].size); err != nil {
				return err
			}
		} else {
			// One round trip for the batch's blobs.
			keys, sizes := make([]string, len(batch)), make([]int64, len(batch))
			for i, d := range batch {
				keys[i], sizes[i] = d.key, d.size
			}
			if _, err := tx.Exec(ctx, `INSERT INTO blobs (key, size) SELECT * FROM unnest($1::text[], $2::bigint[])`, keys, sizes); err != nil {
				return err
			}
		}
		for _, d := range batch {
			for i, mb := range d.mboxes {
				byBox[mb] = append(byBox[mb], newMessage{
					ID: d.id, Size: d.size, BlobSize: d.size, Wire: true,
					Received: d.received, BlobKey: d.key, Desc: d.desc,
				})
				evs = append(evs, store.Event{Kind: store.EventArrived, Mailbox: d.names[i], IDs: []string{d.id}, Size: d.size})
			}
		}
		// Folders are locked in the order of their mailbox ids, so that
		// two batches never wait for each other.
		boxes := make([]int64, 0, len(byBox))
		for mb := range byBox {
			boxes = append(boxes, mb)
		}
		slices.Sort(boxes)
		for _, mb := range boxes {
			fid, err := inboxID(ctx, tx, mb)
			if err != nil {
				return err
			}
			if _, _, err := insertMessages(ctx, tx, mb, fid, byBox[mb]); err != nil {
				return err
			}
		}
		return s.notifyAllTx(ctx, tx, evs)
	})
	s.observe("pg", "deliver", start, err)
	if err != nil {
		if isUnique(err) {
			return fmt.Errorf("shared: deliver: %w", err)
		}
		return unavailable("deliver: commit", err)
	}
	s.commits.batches.Add(1)
	if len(batch) > 1 {
		s.commits.batched.Add(1)
	}
	return nil
}
