package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"postoffice/internal/store"
)

func summaryIDs(ss []store.Summary) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func testBrowser(t *testing.T, p Pair) {
	sub(t, p, "ListPagingQueries", func(t *testing.T) {
		a := deliver(t, p.A, message("apple pie", "recipe"), "br")
		b := deliver(t, p.B, "From: carol@example.net\nTo: bob@example.org\nSubject: banana bread\n\n"+
			strings.Repeat("a longer body\n", 50), "br")
		c := deliver(t, p.A, message("cherry tart", "x"), "br")
		newest := []string{c, b, a}
		for _, v := range []View{p.A, p.B} {
			r, err := v.Browser.List("br", store.Query{}, 0, 10)
			must(t, "List", err)
			if r.Total != 3 || !slices.Equal(summaryIDs(r.Messages), newest) {
				t.Fatalf("List: Total %d %v, want 3 %v (newest first)", r.Total, summaryIDs(r.Messages), newest)
			}
			r, err = v.Browser.List("br", store.Query{}, 1, 1)
			must(t, "List page", err)
			if r.Total != 3 || !slices.Equal(summaryIDs(r.Messages), []string{b}) {
				t.Fatalf("List offset 1 limit 1: Total %d %v, want 3 [%s]", r.Total, summaryIDs(r.Messages), b)
			}
			r, err = v.Browser.List("br", store.Query{}, 5, 10)
			must(t, "List past the end", err)
			if r.Total != 3 || len(r.Messages) != 0 {
				t.Fatalf("List past the end: %+v", r)
			}
		}
		queries := map[string][]string{
			"banana":             {b},
			"subject:cherry":     {c},
			"from:carol":         {b},
			"from:alice":         {c, a},
			"text:recipe":        {a},
			"larger:500":         {b},
			"is:unread":          {c, b, a},
			"is:read":            nil,
			"nothingmatchesthis": nil,
		}
		for qs, want := range queries {
			q, err := store.ParseQuery(qs)
			must(t, "ParseQuery", err)
			r, err := p.B.Browser.List("br", q, 0, 10)
			must(t, "List "+qs, err)
			if r.Total != len(want) || !slices.Equal(summaryIDs(r.Messages), want) {
				t.Errorf("List %q: Total %d %v, want %v", qs, r.Total, summaryIDs(r.Messages), want)
			}
		}
		mi, err := p.B.Browser.Mailbox("br")
		must(t, "Mailbox", err)
		if mi.Name != "br" || mi.Messages != 3 || mi.Unseen != 3 || mi.Size <= 0 {
			t.Fatalf("Mailbox: %+v", mi)
		}
		if mi, err := p.B.Browser.Mailbox("nobody-yet"); err != nil || mi.Messages != 0 {
			t.Fatalf("Mailbox of a missing mailbox: %+v %v", mi, err)
		}
		all, err := p.A.Browser.Mailboxes()
		must(t, "Mailboxes", err)
		if !slices.IsSortedFunc(all, func(x, y store.MailboxInfo) int { return strings.Compare(x.Name, y.Name) }) ||
			!slices.ContainsFunc(all, func(x store.MailboxInfo) bool { return x.Name == "br" && x.Messages == 3 }) {
			t.Fatalf("Mailboxes %+v", all)
		}
	})
	sub(t, p, "GetOpen", func(t *testing.T) {
		msg := "From: =?UTF-8?Q?Ren=C3=A9?= <rene@example.org>\nTo: a@example.org\nCc: b@example.org\n" +
			"Subject: =?UTF-8?B?w6l0w6k=?=\nDate: Tue, 1 Dec 2026 08:00:00 +0000\n\nbody\n"
		id := deliver(t, p.A, msg, "bg")
		s, err := p.B.Browser.Get("bg", id)
		must(t, "Get", err)
		if s.ID != id || !strings.Contains(s.From, "René") || s.Subject != "été" || len(s.To) != 2 ||
			s.Date.IsZero() || s.Size != int64(len(crlf(msg))) || s.Received.IsZero() {
			t.Fatalf("Get: %+v", s)
		}
		rc, s2, err := p.B.Browser.Open("bg", id)
		got := read(t, rc, err)
		if got != crlf(msg) || s2.ID != id || int64(len(got)) != s2.Size {
			t.Fatalf("Open: %q %+v", got, s2)
		}
		_, err = p.A.Browser.Get("bg", "no-such-id")
		errIs(t, "Get of an unknown id", err, store.ErrNotFound)
		_, _, err = p.A.Browser.Open("bg", "no-such-id")
		errIs(t, "Open of an unknown id", err, store.ErrNotFound)
		_, err = p.A.Browser.Get("other-box", id)
		errIs(t, "Get of an id of another mailbox", err, store.ErrNotFound)
	})
	sub(t, p, "DeleteLockedByPOP3", func(t *testing.T) {
		a := deliver(t, p.A, message("d1", "x"), "bd")
		b := deliver(t, p.A, message("d2", "x"), "bd")
		d := openDrop(t, p.B, "bd")
		_, err := p.A.Browser.Delete("bd", []string{a})
		errIs(t, "Delete under a POP3 session", err, store.ErrLocked)
		if got := listedIDs(t, p.A, "bd"); len(got) != 2 {
			t.Fatalf("a refused Delete removed something: %v", got)
		}
		must(t, "Close", d.Close())
		del, err := p.A.Browser.Delete("bd", []string{a, "no-such-id"})
		must(t, "Delete", err)
		if !slices.Equal(del, []string{a}) {
			t.Fatalf("Delete returned %v, want [%s]", del, a)
		}
		if got := browsed(t, p.B, "bd"); !slices.Equal(got, []string{b}) {
			t.Fatalf("B browses %v after the delete", got)
		}
		if got := listedIDs(t, p.B, "bd"); !slices.Equal(got, []string{b}) {
			t.Fatalf("B lists %v after the delete", got)
		}
		_, err = p.B.Browser.Get("bd", a)
		errIs(t, "Get of a deleted message", err, store.ErrNotFound)
	})
	sub(t, p, "SetSeen", func(t *testing.T) {
		msg := message("s", "x")
		id := deliver(t, p.A, msg, "bs")
		s, err := p.A.Browser.SetSeen("bs", id, true)
		must(t, "SetSeen", err)
		if !s.Seen || s.ID != id || s.Size != int64(len(crlf(msg))) {
			t.Fatalf("SetSeen true: %+v", s)
		}
		if s, err := p.B.Browser.Get("bs", id); err != nil || !s.Seen {
			t.Fatalf("B: %+v %v", s, err)
		}
		if mi, _ := p.B.Browser.Mailbox("bs"); mi.Unseen != 0 || mi.Messages != 1 {
			t.Fatalf("Mailbox after SetSeen: %+v", mi)
		}
		s, err = p.B.Browser.SetSeen("bs", id, false)
		must(t, "SetSeen false", err)
		if s.Seen {
			t.Fatalf("SetSeen false: %+v", s)
		}
		if s, err := p.A.Browser.Get("bs", id); err != nil || s.Seen {
			t.Fatalf("A after unseen: %+v %v", s, err)
		}
		rc, _, err := p.A.Browser.Open("bs", id)
		if got := read(t, rc, err); got != crlf(msg) {
			t.Fatalf("content changed by SetSeen: %q", got)
		}
		_, err = p.A.Browser.SetSeen("bs", "no-such-id", true)
		errIs(t, "SetSeen of an unknown id", err, store.ErrNotFound)
	})
}

func testArrivals(t *testing.T, p Pair) {
	if p.A.Arrivals == nil || p.B.Arrivals == nil {
		t.Skip("the store has no Arrivals")
	}
	sub(t, p, "Order", func(t *testing.T) {
		early := p.A.Store.NewID()
		s, ok, err := p.A.Arrivals.Arrival("ar", store.Query{}, "", false)
		must(t, "Arrival in an empty mailbox", err)
		if ok {
			t.Fatalf("Arrival in an empty mailbox: %+v", s)
		}
		a := deliver(t, p.A, message("a1", "x"), "ar")
		b := deliver(t, p.B, message("a2 special", "x"), "ar")
		c := deliver(t, p.A, message("a3", "x"), "ar")
		for _, v := range []View{p.A, p.B} {
			check := func(after string, newest bool, q store.Query, want string) {
				t.Helper()
				s, ok, err := v.Arrivals.Arrival("ar", q, after, newest)
				must(t, "Arrival", err)
				if want == "" {
					if ok {
						t.Fatalf("Arrival(after %q, newest %v): %s, want none", after, newest, s.ID)
					}
					return
				}
				if !ok || s.ID != want {
					t.Fatalf("Arrival(after %q, newest %v): %s %v, want %s", after, newest, s.ID, ok, want)
				}
			}
			check("", false, store.Query{}, a)
			check(a, false, store.Query{}, b)
			check(b, false, store.Query{}, c)
			check(c, false, store.Query{}, "")
			check("", true, store.Query{}, c)
			check(early, false, store.Query{}, a)
			check(v.Store.NewID(), false, store.Query{}, "")
			check("", false, store.Query{Subject: []string{"special"}}, b)
			check(b, false, store.Query{Subject: []string{"special"}}, "")
		}
		_, _, err = p.A.Arrivals.Arrival("ar", store.Query{}, "not-an-id", false)
		errIs(t, "Arrival after an unknown marker", err, store.ErrNotFound)
		// A message deleted since still marks its place.
		if _, err := p.A.Browser.Delete("ar", []string{b}); err != nil {
			t.Fatal(err)
		}
		s, ok, err = p.B.Arrivals.Arrival("ar", store.Query{}, b, false)
		must(t, "Arrival after a deleted marker", err)
		if !ok || s.ID != c {
			t.Fatalf("Arrival after the deleted %s: %s %v, want %s", b, s.ID, ok, c)
		}
	})
	sub(t, p, "OnlyInbox", func(t *testing.T) {
		c := deliver(t, p.A, message("inbox", "x"), "ari")
		folderNames(t, p.A, "ari")
		f := openFolder(t, p.A, "ari", "Archive")
		appendMsg(t, f, message("in a folder", "x"))
		s, ok, err := p.B.Arrivals.Arrival("ari", store.Query{}, "", true)
		if err != nil || !ok || s.ID != c {
			t.Fatalf("newest Arrival after an Append to a folder: %s %v %v, want %s", s.ID, ok, err, c)
		}
	})
}

var _ = errors.Is
