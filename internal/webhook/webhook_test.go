package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

type counters struct {
	sent, retries, dropped, failedFinal, failed atomic.Int64
}

func (c *counters) WebhookSent()  { c.sent.Add(1) }
func (c *counters) WebhookRetry() { c.retries.Add(1) }
func (c *counters) WebhookFailed(_ string, final bool) {
	c.failed.Add(1)
	if final {
		c.failedFinal.Add(1)
	}
}
func (c *counters) WebhookDropped()  { c.dropped.Add(1) }
func (c *counters) WebhookQueue(int) {}

// TestRetriesThenDelivers: a receiver that fails the first two calls (500)
// gets the notification at the third, with the JSON, the signature and
// the subject looked up.
func TestRetriesThenDelivers(t *testing.T) {
	var calls atomic.Int32
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if calls.Add(1) <= 2 {
			w.WriteHeader(500)
			return
		}
		got <- r
		bodies <- b
	}))
	defer rcv.Close()
	cnt := &counters{}
	s := New(Options{URL: rcv.URL, Secret: "k", Retries: 4, Backoff: time.Millisecond, Counters: cnt,
		Lookup: func(mb, id string) (string, int64, bool) { return "subject of " + mb + "/" + id, 123, true }})
	defer s.Shutdown(context.Background())
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Enqueue(Notification{ID: "ID1", Mailbox: "user", Envelope: Envelope{From: "a@x", To: []string{"b@y"}}, Size: 99, Received: when})
	var r *http.Request
	select {
	case r = <-got:
	case <-time.After(testsupport.Timeout):
		t.Fatal("no notification")
	}
	body := <-bodies
	if calls.Load() != 3 {
		t.Fatalf("%d calls", calls.Load())
	}
	if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get(DeliveryHeader) != "ID1" {
		t.Fatalf("request %s %v", r.Method, r.Header)
	}
	if sig := r.Header.Get(SignatureHeader); sig != Sign("k", body) || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q", sig)
	}
	var n map[string]any
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	want := `{"envelope":{"from":"a@x","to":["b@y"]},"event":"message.delivered","id":"ID1","mailbox":"user","received":"2026-01-02T03:04:05Z","size":123,"subject":"subject of user/ID1"}`
	if b, _ := json.Marshal(n); string(b) != want {
		t.Fatalf("body %s\nwant %s", b, want)
	}
	testsupport.WaitFor(t, "counters", func() bool { return cnt.sent.Load() == 1 })
	if cnt.retries.Load() != 2 || cnt.failed.Load() != 2 || cnt.failedFinal.Load() != 0 {
		t.Fatalf("retries %d failed %d final %d", cnt.retries.Load(), cnt.failed.Load(), cnt.failedFinal.Load())
	}
}

// TestGivesUp: a 400 is not retried; a receiver always failing gets
// Retries+1 calls, then the notification is given up.
func TestGivesUp(t *testing.T) {
	var calls atomic.Int32
	code := atomic.Int32{}
	code.Store(400)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(int(code.Load()))
	}))
	defer rcv.Close()
	cnt := &counters{}
	s := New(Options{URL: rcv.URL, Retries: 2, Backoff: time.Millisecond, Counters: cnt, Workers: 1})
	s.Enqueue(Notification{ID: "a"})
	testsupport.WaitFor(t, "given up", func() bool { return cnt.failedFinal.Load() == 1 })
	if calls.Load() != 1 {
		t.Fatalf("400 called %d times", calls.Load())
	}
	code.Store(503)
	s.Enqueue(Notification{ID: "b"})
	testsupport.WaitFor(t, "given up", func() bool { return cnt.failedFinal.Load() == 2 })
	if calls.Load() != 1+3 {
		t.Fatalf("503: %d calls in all", calls.Load())
	}
	s.Shutdown(context.Background())
}

// TestQueueBoundAndDrain: with the receiver blocked, the queue holds Queue
// notifications and drops (counts) the rest; Enqueue never blocks. At
// shutdown the queue gets the drain time, then what is left is dropped.
func TestQueueBoundAndDrain(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer rcv.Close()
	cnt := &counters{}
	s := New(Options{URL: rcv.URL, Queue: 3, Workers: 1, Retries: 0, Counters: cnt, Timeout: time.Minute})
	s.Enqueue(Notification{ID: "in-flight"})
	testsupport.WaitFor(t, "first call", func() bool { return calls.Load() == 1 })
	for i := range 5 {
		ok := s.Enqueue(Notification{ID: string(rune('a' + i))})
		if want := i < 3; ok != want {
			t.Fatalf("Enqueue %d: %v", i, ok)
		}
	}
	if cnt.dropped.Load() != 2 {
		t.Fatalf("dropped %d", cnt.dropped.Load())
	}
	// Shutdown with a short drain: the blocked call is canceled, the three
	// queued are dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown reported a full drain")
	}
	if cnt.dropped.Load() != 5 || cnt.sent.Load() != 0 {
		t.Fatalf("dropped %d sent %d", cnt.dropped.Load(), cnt.sent.Load())
	}
	if s.Enqueue(Notification{ID: "late"}) {
		t.Fatal("Enqueue after Shutdown")
	}
	close(release)
}

// TestDrainSendsPending: Shutdown lets queued notifications go out.
func TestDrainSendsPending(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get(DeliveryHeader))
		mu.Unlock()
	}))
	defer rcv.Close()
	s := New(Options{URL: rcv.URL, Workers: 1})
	for _, id := range []string{"1", "2", "3"} {
		s.Enqueue(Notification{ID: id})
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 {
		t.Fatalf("sent %v", ids)
	}
}

func TestBackoff(t *testing.T) {
	s := &Sender{o: Options{Backoff: time.Second, MaxBackoff: 10 * time.Second}}
	for n, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		if got := s.backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}
