package server

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"postoffice/internal/metrics"
	"postoffice/internal/store"
)

// countingConn is a client connection accepted by a blockListener: it
// counts the octets read and the end of the connection for the metrics.
type countingConn struct {
	net.Conn
	l      *blockListener
	closed atomic.Bool
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.l.received != nil {
		c.l.received.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.m.ConnClosed(c.l.proto)
	}
	return c.Conn.Close()
}

// meteredStore is the store as the SMTP backend sees it: it measures
// delivery latency and counts store errors.
type meteredStore struct {
	store.Deliverer
	m *metrics.Metrics
}

// Deliver measures the time from the end of the message data (the reader's
// EOF: the client sent the final CRLF.CRLF or BDAT LAST) to the return of
// the store's Deliver, after which the engine answers 250. A failure that
// is not the client's (its read failing) or a cancellation counts as a
// store error.
func (s *meteredStore) Deliver(ctx context.Context, id string, mailboxes []string, r io.Reader) error {
	er := &eofReader{r: r}
	err := s.Deliverer.Deliver(ctx, id, mailboxes, er)
	if err != nil {
		if er.err == nil && ctx.Err() == nil {
			s.m.StoreError("deliver")
		}
		return err
	}
	if !er.eof.IsZero() {
		s.m.Delivered(time.Since(er.eof))
	}
	return nil
}

// meteredMaildrops is the store as the POP3 backend sees it: it counts
// store errors.
type meteredMaildrops struct {
	store.MaildropOpener
	m *metrics.Metrics
}

// OpenMaildrop counts failures other than a held lock.
func (s *meteredMaildrops) OpenMaildrop(mailbox string) (store.Maildrop, error) {
	md, err := s.MaildropOpener.OpenMaildrop(mailbox)
	if err != nil && !errors.Is(err, store.ErrLocked) {
		s.m.StoreError("open")
	}
	return md, err
}

// eofReader notes when its reader first reports EOF, and any other error.
type eofReader struct {
	r   io.Reader
	eof time.Time
	err error
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	switch {
	case err == io.EOF:
		if e.eof.IsZero() {
			e.eof = time.Now()
		}
	case err != nil && e.err == nil:
		e.err = err
	}
	return n, err
}

// trackMailboxes keeps the mailbox gauges: it subscribes to the store's
// events, then counts every mailbox (store.Admin.Usage: for the Maildir one
// directory read and a stat per message, never the message files), and
// from then on applies each event: an arrival adds the size of the new
// message, a deletion recounts that mailbox. Events that come during the
// first count only mark their mailbox for a recount after it. It runs until
// ctx ends.
func (s *Server) trackMailboxes(ctx context.Context) {
	gauges := s.metrics.Mailboxes
	var (
		mu      sync.Mutex
		initial = true
		dirty   = map[string]bool{}
	)
	events := make(chan store.Event, 4096)
	cancel := s.store.Subscribe(func(ev store.Event) {
		// The gauges count INBOX, what Usage counts.
		if ev.Folder != "" || ev.Kind != store.EventArrived && ev.Kind != store.EventDeleted {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if initial {
			dirty[ev.Mailbox] = true
			return
		}
		select {
		case events <- ev:
		default:
			// Full: recount instead of losing the change.
			dirty[ev.Mailbox] = true
		}
	})
	defer cancel()

	recount := func(mb string) {
		u, err := s.store.Usage(mb)
		if err != nil {
			s.log.Warn("counting mailbox", "mailbox", mb, "err", err)
			return
		}
		gauges.Set(mb, u.Messages, u.Bytes)
	}
	boxes, err := s.store.Mailboxes()
	if err != nil {
		s.log.Warn("counting mailboxes", "err", err)
	}
	for _, mb := range boxes {
		if ctx.Err() != nil {
			return
		}
		recount(mb)
	}
	takeDirty := func() []string {
		mu.Lock()
		defer mu.Unlock()
		initial = false
		var out []string
		for mb := range dirty {
			out = append(out, mb)
		}
		clear(dirty)
		return out
	}
	for _, mb := range takeDirty() {
		recount(mb)
	}
	gauges.SetReady()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if ev.Kind == store.EventDeleted {
				recount(ev.Mailbox)
				continue
			}
			if len(ev.IDs) == 1 && ev.Size > 0 {
				gauges.Add(ev.Mailbox, 1, ev.Size)
				continue
			}
			recount(ev.Mailbox) // an arrival without its size

		case <-tick.C:
			for _, mb := range takeDirty() {
				recount(mb)
			}
		}
	}
}
