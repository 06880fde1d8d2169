package textio

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Lifecycle.Serve once Shutdown has begun.
var ErrClosed = errors.New("server closed")

// Stopper is a live session as a Lifecycle sees it.
type Stopper interface {
	// Stop asks the session to end at its next command boundary: a session
	// waiting for a command ends at once, one busy with a command finishes
	// it first. Safe to call from any goroutine.
	Stop()
	// ForceClose closes the session's connection now.
	ForceClose()
}

// Lifecycle is what a protocol server needs for a graceful shutdown: its
// listeners, the connections being served and the sessions running. The
// zero value is ready to use. Both engines embed one.
type Lifecycle struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc

	// closing is read without mu: sessions ask Closing while holding their
	// own lock, and Shutdown takes session locks (Stop), so mu must never be
	// held around either.
	closing   atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[Stopper]struct{}
	active    sync.WaitGroup // one per connection being served
}

func (lc *Lifecycle) init() {
	lc.once.Do(func() {
		lc.ctx, lc.cancel = context.WithCancel(context.Background())
		lc.listeners = make(map[net.Listener]struct{})
		lc.sessions = make(map[Stopper]struct{})
	})
}

// Context is canceled when Shutdown stops waiting for sessions; backend
// calls of sessions derive from it.
func (lc *Lifecycle) Context() context.Context {
	lc.init()
	return lc.ctx
}

// Closing reports whether Shutdown has begun.
func (lc *Lifecycle) Closing() bool { return lc.closing.Load() }

// Serve accepts connections on l and runs serve for each in its own
// goroutine, counted as active, until Shutdown, when it returns ErrClosed.
// Accept errors that may pass (out of file descriptors and the like) are
// logged and retried with a growing pause, as net/http does.
func (lc *Lifecycle) Serve(l net.Listener, log *slog.Logger, serve func(net.Conn)) error {
	lc.init()
	lc.mu.Lock()
	if lc.closing.Load() {
		lc.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	lc.listeners[l] = struct{}{}
	lc.mu.Unlock()
	defer func() {
		lc.mu.Lock()
		delete(lc.listeners, l)
		lc.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if lc.Closing() {
				return ErrClosed
			}
			var ne net.Error
			var temp interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Timeout() || errors.As(err, &temp) && temp.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				log.Warn("accept failed, retrying", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !lc.Begin() {
			c.Close()
			return ErrClosed
		}
		go func() {
			defer lc.End()
			serve(c)
		}()
	}
}

// Begin counts a connection as being served unless Shutdown has begun;
// each true must be followed by one End.
func (lc *Lifecycle) Begin() bool {
	lc.init()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.closing.Load() {
		return false
	}
	lc.active.Add(1)
	return true
}

// End marks a connection counted by Begin as done.
func (lc *Lifecycle) End() { lc.active.Done() }

// Track registers a running session so that Shutdown can stop it. It
// returns false once Shutdown has begun; each true must be followed by one
// Untrack.
func (lc *Lifecycle) Track(s Stopper) bool {
	lc.init()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.closing.Load() {
		return false
	}
	lc.sessions[s] = struct{}{}
	return true
}

// Untrack removes a session registered by Track.
func (lc *Lifecycle) Untrack(s Stopper) {
	lc.mu.Lock()
	delete(lc.sessions, s)
	lc.mu.Unlock()
}

// Shutdown closes the listeners and stops every session, then waits for
// every connection to be done. When ctx ends first it cancels Context,
// force-closes the remaining sessions, waits for them and returns
// ctx.Err(); otherwise nil.
func (lc *Lifecycle) Shutdown(ctx context.Context) error {
	lc.init()
	// Under mu, so that no Begin or Track slips in after the sessions are
	// collected; Stop and Close run after mu is released (see closing).
	lc.mu.Lock()
	lc.closing.Store(true)
	listeners, sessions := lc.snapshot()
	lc.mu.Unlock()
	for _, l := range listeners {
		l.Close()
	}
	for _, s := range sessions {
		s.Stop()
	}

	done := make(chan struct{})
	go func() {
		lc.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	lc.cancel()
	lc.mu.Lock()
	_, sessions = lc.snapshot()
	lc.mu.Unlock()
	for _, s := range sessions {
		s.ForceClose()
	}
	<-done
	return ctx.Err()
}

// snapshot copies the listeners and sessions; mu must be held.
func (lc *Lifecycle) snapshot() ([]net.Listener, []Stopper) {
	ls := make([]net.Listener, 0, len(lc.listeners))
	for l := range lc.listeners {
		ls = append(ls, l)
	}
	ss := make([]Stopper, 0, len(lc.sessions))
	for s := range lc.sessions {
		ss = append(ss, s)
	}
	return ls, ss
}
