// Package storetest is the conformance suite of the message stores: tests
// written from the contracts of internal/store (the doc comments of
// store.go, folders.go, events.go and browse.go), run against every
// implementation, as net/http/httptest serves tests of net/http. A store's
// test calls Run with a function that opens two views of one storage (two
// processes, or two nodes, on the same data), so that what one view does
// is checked through the other.
package storetest

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/store"
)

// View is one process's (or node's) access to the storage.
type View struct {
	Store store.Store
	// Browser is nil only while a store is being built: the subtests
	// then check what they can without it, and the Browser group must be
	// skipped (Pair.Skip).
	Browser store.Browser
	// Arrivals is nil when the store has none; the Arrivals tests are
	// then skipped.
	Arrivals store.Arrivals
}

// Pair is two views of ONE storage.
type Pair struct {
	A, B View
	// CrossEvents reports that a subscriber of one view also receives the
	// events of changes made through the other (the shared store's nodes
	// tell each other; the Maildir's events are per store value).
	CrossEvents bool
	// Skip names subtests (their path below Run, e.g.
	// "Folders/RenameInbox") to skip, with the reason: known differences
	// of one store from a contract, reported as findings.
	Skip map[string]string
}

// Run runs the conformance suite. newStores opens a fresh, empty storage
// with two views of it; it registers their closing with t.Cleanup.
func Run(t *testing.T, newStores func(t *testing.T) Pair) {
	groups := []struct {
		name string
		fn   func(t *testing.T, p Pair)
	}{
		{"Deliver", testDeliver},
		{"OpenMaildrop", testMaildrop},
		{"Events", testEvents},
		{"Admin", testAdmin},
		{"Folders", testFolders},
		{"Browser", testBrowser},
		{"Arrivals", testArrivals},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			p := newStores(t)
			if why, ok := skipped(p, g.name); ok {
				t.Skip(why)
			}
			g.fn(t, p)
		})
	}
}

// sub runs one subtest unless the pair skips it.
func sub(t *testing.T, p Pair, name string, fn func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		full := t.Name()
		if i := strings.Index(full, "/"); i >= 0 {
			full = full[i+1:]
		}
		if why, ok := skipped(p, full); ok {
			t.Skip(why)
		}
		fn(t)
	})
}

// skipped reports whether p skips the subtest at path (below Run): a Skip
// key names it or a group above it.
func skipped(p Pair, path string) (string, bool) {
	for k, why := range p.Skip {
		if path == k || strings.HasPrefix(path, k+"/") {
			return why, true
		}
	}
	return "", false
}

// crlf is msg with every line ending in CRLF and a final CRLF.
func crlf(msg string) string {
	s := strings.ReplaceAll(msg, "\r\n", "\n")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// message makes a small message with LF line ends.
func message(subject, body string) string {
	return "From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: " + subject +
		"\nDate: Mon, 7 Dec 2026 10:00:00 +0000\nMessage-ID: <" + subject + "@example.org>\n\n" + body + "\n"
}

func deliver(t *testing.T, v View, msg string, mailboxes ...string) string {
	t.Helper()
	id := v.Store.NewID()
	if err := v.Store.Deliver(t.Context(), id, mailboxes, strings.NewReader(msg)); err != nil {
		t.Fatalf("Deliver %v: %v", mailboxes, err)
	}
	return id
}

func readAll(t *testing.T) func(io.ReadCloser, error) string {
	return func(rc io.ReadCloser, err error) string {
		t.Helper()
		return read(t, rc, err)
	}
}

func read(t *testing.T, rc io.ReadCloser, err error) string {
	t.Helper()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func ids(ms []store.MessageInfo) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func listedIDs(t *testing.T, v View, mailbox string) []string {
	t.Helper()
	l, err := v.Store.List(mailbox)
	if err != nil {
		t.Fatalf("List %s: %v", mailbox, err)
	}
	var out []string
	for _, m := range l {
		out = append(out, m.ID)
	}
	return out
}

func browsed(t *testing.T, v View, mailbox string) []string {
	t.Helper()
	if v.Browser == nil {
		return nil
	}
	r, err := v.Browser.List(mailbox, store.Query{}, 0, 1000)
	if err != nil {
		t.Fatalf("Browser.List %s: %v", mailbox, err)
	}
	var out []string
	for _, s := range r.Messages {
		out = append(out, s.ID)
	}
	return out
}

func openDrop(t *testing.T, v View, mailbox string) store.Maildrop {
	t.Helper()
	d, err := v.Store.OpenMaildrop(mailbox)
	if err != nil {
		t.Fatalf("OpenMaildrop %s: %v", mailbox, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// failingReader yields some of a message, then fails.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// recorder collects the events of a subscription.
type recorder struct {
	mu     sync.Mutex
	events []store.Event
	signal chan struct{}
}

func record(t *testing.T, e store.Events) *recorder {
	r := &recorder{signal: make(chan struct{}, 1)}
	cancel := e.Subscribe(func(ev store.Event) {
		ev.IDs = slices.Clone(ev.IDs)
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		select {
		case r.signal <- struct{}{}:
		default:
		}
	})
	t.Cleanup(cancel)
	return r
}

// wait returns the first event recorded that matches, waiting up to d.
func (r *recorder) wait(t *testing.T, d time.Duration, what string, match func(store.Event) bool) store.Event {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, ev := range r.events {
			if match(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		seen := fmt.Sprint(r.events)
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-deadline.C:
			t.Fatalf("no event %s within %v; got %s", what, d, seen)
		}
	}
}

func isEvent(kind store.EventKind, mailbox, folder string, id string) func(store.Event) bool {
	return func(ev store.Event) bool {
		return ev.Kind == kind && ev.Mailbox == mailbox && ev.Folder == folder && slices.Contains(ev.IDs, id)
	}
}

// eventWait bounds how long an event takes to arrive from the other view.
const eventWait = 5 * time.Second

func errIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func hasBareLF(s string) bool {
	return strings.Count(s, "\n") != strings.Count(s, "\r\n")
}
