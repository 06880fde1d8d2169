package maildir

import (
	"errors"
	"postoffice/internal/testsupport"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the test times out.
// TestDirSyncerGroupCommit drives the syncer deterministically: one caller
// starts fsync #1, which blocks; K callers arrive while it runs. They must
// not be satisfied by #1 (it may have started before their links), and they
// must all share fsync #2: K+1 callers, 2 fsyncs.
func TestDirSyncerGroupCommit(t *testing.T) {
	const K = 20
	var calls atomic.Int32
	release := []chan struct{}{make(chan struct{}), make(chan struct{})}
	started := make(chan int, 4)
	s := newDirSyncer("d", func(dir string) error {
		n := int(calls.Add(1))
		started <- n
		if n <= len(release) {
			<-release[n-1]
		}
		return nil
	})

	first := make(chan error, 1)
	go func() { first <- s.Sync() }()
	if n := <-started; n != 1 {
		t.Fatalf("first fsync number %d", n)
	}

	var returned atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, K)
	for range K {
		wg.Go(func() {
			err := s.Sync()
			returned.Add(1)
			errs <- err
		})
	}
	testsupport.WaitFor(t, "callers to queue", func() bool { return s.waiters() == K })

	close(release[0]) // fsync #1 completes
	if err := <-first; err != nil {
		t.Fatalf("first Sync: %v", err)
	}
	// Callers that arrived during #1 need #2: it must start, and none of
	// them may return while it is blocked.
	select {
	case n := <-started:
		if n != 2 {
			t.Fatalf("second fsync number %d", n)
		}
	case <-time.After(5 * time.Second):
		close(release[1])
		t.Fatalf("no second fsync started; %d of %d callers returned, satisfied by an fsync that began before they called", returned.Load(), K)
	}
	if r := returned.Load(); r != 0 {
		t.Fatalf("%d callers returned before the fsync that started after their arrival finished", r)
	}
	close(release[1])
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
	if c := calls.Load(); c != 2 {
		t.Fatalf("%d fsyncs for %d callers, want 2", c, K+1)
	}
}

// TestDirSyncerSerial: callers that do not overlap each get their own
// fsync, started after they called.
func TestDirSyncerSerial(t *testing.T) {
	var calls atomic.Int32
	s := newDirSyncer("d", func(string) error { calls.Add(1); return nil })
	for i := 1; i <= 5; i++ {
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		if c := calls.Load(); c != int32(i) {
			t.Fatalf("after %d Syncs: %d fsyncs", i, c)
		}
	}
}

func TestDirSyncerError(t *testing.T) {
	boom := errors.New("boom")
	fail := true
	s := newDirSyncer("d", func(string) error {
		if fail {
			return boom
		}
		return nil
	})
	if err := s.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync = %v, want %v", err, boom)
	}
	fail = false
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync after recovery = %v, want nil", err)
	}
}
