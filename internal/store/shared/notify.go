package shared

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
)

// eventChannel is the LISTEN/NOTIFY channel of store events.
const eventChannel = "postoffice_events"

// maxPayload bounds a notification's payload: PostgreSQL refuses one of
// 8000 bytes or more.
const maxPayload = 7900

// wireEvent is a store.Event as a notification payload.
type wireEvent struct {
	Node    string          `json:"n"`
	Kind    store.EventKind `json:"k"`
	Mailbox string          `json:"m"`
	Folder  string          `json:"f,omitempty"`
	IDs     []string        `json:"i"`
	Size    int64           `json:"s,omitempty"`
}

// notifier listens on eventChannel on a connection of its own and
// republishes the other nodes' events into the hub.
type notifier struct {
	mu     sync.Mutex
	next   int
	hooks  map[int]func()
	events int64 // events received from other nodes (tests)
}

// payloads splits ev into notification payloads of at most maxPayload
// bytes, each with part of its ids.
func (s *Store) payloads(ev store.Event) ([]string, error) {
	w := wireEvent{Node: s.node, Kind: ev.Kind, Mailbox: ev.Mailbox, Folder: ev.Folder, Size: ev.Size}
	base, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	var out []string
	ids := ev.IDs
	for len(ids) > 0 {
		n, size := 0, len(base)
		for n < len(ids) && size+len(ids[n])+3 < maxPayload {
			size += len(ids[n]) + 3
			n++
		}
		if n == 0 {
			n = 1 // ids are at most 70 characters: never happens
		}
		w.IDs = ids[:n]
		b, err := json.Marshal(w)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
		ids = ids[n:]
	}
	return out, nil
}

// notifyTx queues ev in tx for the other nodes: PostgreSQL delivers it
// when (and only if) tx commits. The caller publishes ev locally with
// s.hub.Publish after the commit. Many ids are split over several
// notifications (a payload is limited to 8000 bytes).
func (s *Store) notifyTx(ctx context.Context, tx pgx.Tx, ev store.Event) error {
	return s.notifyAllTx(ctx, tx, []store.Event{ev})
}

// notifyAllTx is notifyTx of several events in one round trip.
func (s *Store) notifyAllTx(ctx context.Context, tx pgx.Tx, evs []store.Event) error {
	b := &pgx.Batch{}
	for _, ev := range evs {
		ps, err := s.payloads(ev)
		if err != nil {
			return err
		}
		for _, p := range ps {
			b.Queue(`SELECT pg_notify($1, $2)`, eventChannel, p)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}

// onReconnect registers fn to be called after the notification listener
// reconnected to PostgreSQL: notifications sent meanwhile are lost, so
// whoever watches for changes (an IMAP folder's Changed) must look again.
// fn must not block.
func (s *Store) onReconnect(fn func()) (cancel func()) {
	n := s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hooks == nil {
		n.hooks = make(map[int]func())
	}
	id := n.next
	n.next++
	n.hooks[id] = fn
	return func() {
		n.mu.Lock()
		delete(n.hooks, id)
		n.mu.Unlock()
	}
}

// listen opens the listening connection.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	start := time.Now()
	conn, err := pgx.Connect(ctx, s.opts.DSN)
	if err == nil {
		if _, err = conn.Exec(ctx, `LISTEN `+eventChannel); err != nil {
			conn.Close(context.Background())
		}
	}
	s.observe("pg", "listen", start, err)
	if err != nil {
		return nil, unavailable("listen", err)
	}
	return conn, nil
}

// startNotifier listens before Open returns (so that no event committed
// after Open is missed) and then receives in the background.
func (s *Store) startNotifier(ctx context.Context) error {
	s.notify = &notifier{}
	conn, err := s.listen(ctx)
	if err != nil {
		return err
	}
	s.bg.Add(1)
	go s.receive(conn)
	return nil
}

// receive republishes other nodes' notifications until Close, and
// reconnects with backoff when the connection drops.
func (s *Store) receive(conn *pgx.Conn) {
	defer s.bg.Done()
	backoff := 50 * time.Millisecond
	for {
		if conn != nil {
			err := s.wait(conn)
			conn.Close(context.Background())
			conn = nil
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("shared: notification connection lost", "err", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		c, err := s.listen(s.ctx)
		if err != nil {
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		conn = c
		s.log.Info("shared: notification connection back")
		s.notify.mu.Lock()
		hooks := make([]func(), 0, len(s.notify.hooks))
		for _, fn := range s.notify.hooks {
			hooks = append(hooks, fn)
		}
		s.notify.mu.Unlock()
		for _, fn := range hooks {
			fn()
		}
	}
}

// wait receives notifications on conn until an error.
func (s *Store) wait(conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(s.ctx)
		if err != nil {
			return err
		}
		var w wireEvent
		if err := json.Unmarshal([]byte(n.Payload), &w); err != nil {
			s.log.Warn("shared: bad notification", "payload", n.Payload, "err", err)
			continue
		}
		if w.Node == s.node {
			continue
		}
		s.notify.mu.Lock()
		s.notify.events++
		s.notify.mu.Unlock()
		s.hub.Publish(store.Event{Kind: w.Kind, Mailbox: w.Mailbox, Folder: w.Folder, IDs: w.IDs, Size: w.Size})
	}
}
