// Package webhook notifies an HTTP endpoint of every message delivered:
// one JSON POST per message and mailbox, after the message is durable,
// from a bounded queue, never holding up the SMTP reply. Failed calls are
// retried with exponential backoff. See docs/api.md, "Webhook".
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Defaults for the zero values of Options.
const (
	DefaultQueue       = 1000
	DefaultTimeout     = 10 * time.Second
	DefaultBackoff     = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultWorkers     = 4
	SignatureHeader    = "X-Postoffice-Signature"
	DeliveryHeader     = "X-Postoffice-Delivery"
	notificationEvent  = "message.delivered"
	maxResponseDrained = 64 << 10
)

// Envelope is the SMTP envelope of a notification.
type Envelope struct {
	From string   `json:"from"` // reverse-path, "" for <>
	To   []string `json:"to"`   // every accepted recipient of the transaction
}

// Notification is the JSON body of one POST.
type Notification struct {
	Event    string    `json:"event"` // "message.delivered"
	ID       string    `json:"id"`
	Mailbox  string    `json:"mailbox"`
	Envelope Envelope  `json:"envelope"`
	Subject  string    `json:"subject"`
	Size     int64     `json:"size"`
	Received time.Time `json:"received"`
}

// Counters receives the outcome of the calls (metrics); nil methods are
// not called when Options.Counters is nil.
type Counters interface {
	WebhookSent()
	WebhookFailed(reason string, final bool)
	WebhookRetry()
	WebhookDropped()
	WebhookQueue(n int)
}

// Options configures a Sender.
type Options struct {
	URL    string
	Secret string // "" for no signature
	// Retries after a failed call (0: none); Backoff·2^n between them,
	// capped at MaxBackoff.
	Retries    int
	Backoff    time.Duration
	MaxBackoff time.Duration
	Timeout    time.Duration // per call
	Queue      int           // notifications waiting at most
	Workers    int           // calls at once
	// Lookup, when set, finds the subject and the stored size of a
	// delivered message (off the SMTP path, in a worker); it may fail (the
	// message is gone), and the notification keeps what it had.
	Lookup   func(mailbox, id string) (subject string, size int64, ok bool)
	Client   *http.Client // nil: a client with Timeout
	Logger   *slog.Logger
	Counters Counters
}

// Sender queues notifications and posts them.
type Sender struct {
	o      Options
	queue  chan Notification
	ctx    context.Context // ends when the drain time is over
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

// New starts a Sender's workers.
func New(o Options) *Sender {
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{o: o, queue: make(chan Notification, o.Queue), ctx: ctx, cancel: cancel}
	for range o.Workers {
		s.wg.Add(1)
		go s.work()
	}
	return s
}

// Enqueue queues n without blocking. When the queue is full (or the Sender
// is shutting down) n is dropped, counted and logged, and Enqueue reports
// false.
func (s *Sender) Enqueue(n Notification) bool {
	n.Event = notificationEvent
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		select {
		case s.queue <- n:
			s.count(func(c Counters) { c.WebhookQueue(len(s.queue)) })
			return true
		default:
		}
	}
	s.o.Logger.Warn("webhook: notification dropped, queue full", "id", n.ID, "mailbox", n.Mailbox, "queue", cap(s.queue))
	s.count(func(c Counters) { c.WebhookDropped() })
	return false
}

// Shutdown stops taking notifications and lets the workers send what is
// queued until ctx ends; then the calls in progress are canceled and what
// is left is dropped (counted, logged).
func (s *Sender) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.queue)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	<-done
	return ctx.Err()
}

func (s *Sender) count(f func(Counters)) {
	if s.o.Counters != nil {
		f(s.o.Counters)
	}
}

func (s *Sender) work() {
	defer s.wg.Done()
	for n := range s.queue {
		s.count(func(c Counters) { c.WebhookQueue(len(s.queue)) })
		if s.ctx.Err() != nil {
			s.o.Logger.Warn("webhook: notification dropped at shutdown", "id", n.ID, "mailbox", n.Mailbox)
			s.count(func(c Counters) { c.WebhookDropped() })
			continue
		}
		s.deliver(n)
	}
}

// deliver posts n, retrying failed calls.
func (s *Sender) deliver(n Notification) {
	if s.o.Lookup != nil {
		if subj, size, ok := s.o.Lookup(n.Mailbox, n.ID); ok {
			n.Subject, n.Size = subj, size
		}
	}
	body, err := json.Marshal(n)
	if err != nil {
		s.o.Logger.Error("webhook: encode", "id", n.ID, "err", err)
		return
	}
	for try := 0; ; try++ {
		if try > 0 {
			s.count(func(c Counters) { c.WebhookRetry() })
		}
		retry, reason, err := s.post(body, n.ID)
		if err == nil {
			s.count(func(c Counters) { c.WebhookSent() })
			s.o.Logger.Debug("webhook: sent", "id", n.ID, "mailbox", n.Mailbox, "tries", try+1)
			return
		}
		final := !retry || try >= s.o.Retries || s.ctx.Err() != nil
		s.count(func(c Counters) { c.WebhookFailed(reason, final) })
		if final {
			s.o.Logger.Warn("webhook: notification given up", "id", n.ID, "mailbox", n.Mailbox, "tries", try+1, "err", err)
			return
		}
		wait := s.backoff(try)
		s.o.Logger.Info("webhook: call failed, retrying", "id", n.ID, "try", try+1, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
	}
}

// backoff is the wait after failed try n (0-based): Backoff·2^n, capped.
func (s *Sender) backoff(n int) time.Duration {
	d := s.o.Backoff
	for i := 0; i < n && d < s.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.o.MaxBackoff)
}

// post makes one call. It reports whether a failure is worth retrying:
// no answer, a timeout, 5xx, 408 and 429 are; other 4xx say the receiver
// refuses this notification and are not.
func (s *Sender) post(body []byte, id string) (retry bool, reason string, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(body))
	if err != nil {
		return false, "error", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Postoffice-Webhook")
	req.Header.Set(DeliveryHeader, id)
	if s.o.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(s.o.Secret, body))
	}
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return true, "error", err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseDrained))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, "", nil
	case c >= 500, c == http.StatusRequestTimeout, c == http.StatusTooManyRequests:
		return true, "status", fmt.Errorf("receiver answered %s", resp.Status)
	default:
		return false, "status", fmt.Errorf("receiver answered %s", resp.Status)
	}
}

// Sign is the signature header's value for body: "sha256=" and the hex
// HMAC-SHA256 of the body with secret as key (RFC 2104).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
