package textio

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"postoffice/internal/testsupport"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedSession asks Closing while holding its own lock, as the SMTP
// session does when it goes idle, and takes that lock in Stop.
type lockedSession struct {
	mu      sync.Mutex
	stopped bool
	forced  atomic.Bool
}

func (s *lockedSession) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

func (s *lockedSession) ForceClose() { s.forced.Store(true) }

// Regression: Shutdown held the lifecycle lock while calling Stop, and a
// session called Closing (which took that lock) while holding its own:
// the two could deadlock.
func TestShutdownDoesNotDeadlockWithSessionLocks(t *testing.T) {
	for round := 0; round < 50; round++ {
		var lc Lifecycle
		var sessions []*lockedSession
		for i := 0; i < 8; i++ {
			s := &lockedSession{}
			if !lc.Begin() || !lc.Track(s) {
				t.Fatal("refused before shutdown")
			}
			sessions = append(sessions, s)
			go func() {
				defer lc.End()
				defer lc.Untrack(s)
				for {
					s.mu.Lock()
					done := s.stopped || lc.Closing()
					s.mu.Unlock()
					if done {
						return
					}
				}
			}()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := lc.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Shutdown = %v (deadlocked sessions were force-closed)", round, err)
		}
		if lc.Begin() || lc.Track(&lockedSession{}) {
			t.Fatal("Begin or Track accepted after Shutdown")
		}
	}
}

// A session that does not stop is force-closed when ctx ends, and its
// backend context is canceled.
func TestShutdownForcesStuckSessions(t *testing.T) {
	var lc Lifecycle
	s := &lockedSession{}
	lc.Begin()
	lc.Track(s)
	go func() {
		defer lc.End()
		defer lc.Untrack(s)
		for !s.forced.Load() {
			time.Sleep(time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := lc.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if !s.forced.Load() || lc.Context().Err() == nil {
		t.Fatal("stuck session not force-closed, or context not canceled")
	}
}

func TestServeReturnsErrClosed(t *testing.T) {
	var lc Lifecycle
	l := testsupport.Listen(t)
	served := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- lc.Serve(l, slog.New(slog.NewTextHandler(io.Discard, nil)), func(c net.Conn) {
			c.Close()
			served <- struct{}{}
		})
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not served")
	}
	if err := lc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if err := lc.Serve(l, slog.Default(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
}
