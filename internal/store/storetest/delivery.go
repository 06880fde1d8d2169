package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"postoffice/internal/store"
)

func testDeliver(t *testing.T, p Pair) {
	sub(t, p, "VisibleEverywhere", func(t *testing.T) {
		msg := message("visible", "one\ntwo")
		id := deliver(t, p.A, msg, "alice", "bob")
		want := crlf(msg)
		for _, v := range []View{p.A, p.B} {
			for _, mb := range []string{"alice", "bob"} {
				d, err := v.Store.OpenMaildrop(mb)
				must(t, "OpenMaildrop", err)
				ms := d.Messages()
				if len(ms) != 1 || ms[0].ID != id || ms[0].Size != int64(len(want)) {
					d.Close()
					t.Fatalf("maildrop %s: %+v, want one message %s of %d octets", mb, ms, id, len(want))
				}
				got := readAll(t)(d.Open(0))
				d.Close()
				if got != want {
					t.Fatalf("maildrop %s content %q, want %q", mb, got, want)
				}
				if v.Browser == nil {
					continue // storeSkips says so
				}
				s, err := v.Browser.Get(mb, id)
				must(t, "Browser.Get", err)
				if s.ID != id || s.Subject != "visible" || s.Size != int64(len(want)) || s.Seen {
					t.Fatalf("Browser.Get %s: %+v", mb, s)
				}
			}
		}
	})
	sub(t, p, "DistinctMailboxes", func(t *testing.T) {
		id := deliver(t, p.A, message("twice", "x"), "carol", "carol")
		if got := listedIDs(t, p.B, "carol"); !slices.Equal(got, []string{id}) {
			t.Fatalf("carol holds %v, want one copy of %s", got, id)
		}
	})
	sub(t, p, "ReadErrorLeavesNothing", func(t *testing.T) {
		cut := errors.New("client went away")
		id := p.A.Store.NewID()
		r := &failingReader{data: []byte(message("cut", strings.Repeat("line of text\n", 5000))), err: cut}
		err := p.A.Store.Deliver(t.Context(), id, []string{"dave", "erin"}, r)
		if !errors.Is(err, cut) {
			t.Fatalf("Deliver with a failing reader: %v, want it wrapped: %v", err, cut)
		}
		for _, v := range []View{p.A, p.B} {
			for _, mb := range []string{"dave", "erin"} {
				if got := listedIDs(t, v, mb); len(got) != 0 {
					t.Fatalf("List %s after a failed delivery: %v", mb, got)
				}
				if got := browsed(t, v, mb); v.Browser != nil && len(got) != 0 {
					t.Fatalf("Browser.List %s after a failed delivery: %v", mb, got)
				}
				d := openDrop(t, v, mb)
				if n := len(d.Messages()); n != 0 {
					t.Fatalf("maildrop %s after a failed delivery has %d messages", mb, n)
				}
				d.Close()
				u, err := v.Store.Usage(mb)
				must(t, "Usage", err)
				if u.Messages != 0 {
					t.Fatalf("Usage %s after a failed delivery: %+v", mb, u)
				}
			}
		}
	})
	sub(t, p, "BadMailbox", func(t *testing.T) {
		for _, mb := range []string{"../etc", "a/b", "", "."} {
			err := p.A.Store.Deliver(t.Context(), p.A.Store.NewID(), []string{mb}, strings.NewReader(message("bad", "x")))
			errIs(t, "Deliver to "+strconvQuote(mb), err, store.ErrBadMailbox)
		}
	})
	sub(t, p, "NewIDForm", func(t *testing.T) {
		seen := map[string]bool{}
		var prev string
		for i := range 2000 {
			v := p.A
			if i%2 == 1 {
				v = p.B
			}
			id := v.Store.NewID()
			if len(id) < 1 || len(id) > 70 || strings.ContainsAny(id, "/:") {
				t.Fatalf("NewID %q: not 1-70 characters without '/' or ':'", id)
			}
			for _, c := range []byte(id) {
				if c < 0x21 || c > 0x7e {
					t.Fatalf("NewID %q: octet %#x outside 0x21-0x7E", id, c)
				}
			}
			if seen[id] {
				t.Fatalf("NewID %q returned twice", id)
			}
			seen[id] = true
			if i%2 == 0 {
				if prev != "" && id <= prev {
					t.Fatalf("NewID of one view not increasing: %q after %q", id, prev)
				}
				prev = id
			}
		}
		// Sortable by time of assignment, also across the views.
		a := p.A.Store.NewID()
		time.Sleep(2 * time.Millisecond) // two assignments at distinct times, not a synchronisation
		b := p.B.Store.NewID()
		if b <= a {
			t.Fatalf("id %q assigned after %q sorts before it", b, a)
		}
	})
}

func strconvQuote(s string) string { return "\"" + s + "\"" }
