package shared

import (
	"errors"
	"slices"
	"testing"

	"postoffice/internal/store"
)

// The web inbox's view: counts, listing newest first with paging, the
// query conditions the index answers (word prefixes folded for case and
// accents, fields, phrases, seen, size, tags), Get/Open, SetSeen with its
// event, Delete refused under a POP3 lease of another node.
func TestBrowser(t *testing.T) {
	e := sharedEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	br := b.Browser()
	plain := deliver(t, a, msg("Weekly report", "numbers and charts"), "alice")
	accent := deliver(t, a, "From: Zoë <zoe@example.org>\r\nTo: alice+signup-42@example.org\r\nSubject: Café crème\r\n\r\nDéjà vu\r\n", "alice")
	html := deliver(t, a, "From: c@example.org\r\nSubject: markup\r\nContent-Type: text/html\r\n\r\n<p style=\"color:red\">visible words</p>\r\n", "alice")
	deliver(t, a, msg("other", "x"), "bob")

	mi, err := br.Mailbox("alice")
	if err != nil || mi.Messages != 3 || mi.Unseen != 3 || mi.Size <= 0 {
		t.Fatalf("Mailbox = %+v, %v", mi, err)
	}
	all, err := br.Mailboxes()
	if err != nil || len(all) != 2 || all[0].Name != "alice" || all[1].Name != "bob" || all[1].Messages != 1 {
		t.Fatalf("Mailboxes = %+v, %v", all, err)
	}
	if mi, err := br.Mailbox("nobody"); err != nil || mi.Messages != 0 {
		t.Fatalf("Mailbox(nobody) = %+v, %v", mi, err)
	}

	list := func(q string, offset, limit int) (int, []string) {
		t.Helper()
		query, err := store.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		res, err := br.List("alice", query, offset, limit)
		if err != nil {
			t.Fatalf("List(%q): %v", q, err)
		}
		var ids []string
		for _, m := range res.Messages {
			ids = append(ids, m.ID)
		}
		return res.Total, ids
	}
	if n, got := list("", 0, 10); n != 3 || !slices.Equal(got, []string{html, accent, plain}) {
		t.Fatalf("all: %d %v", n, got)
	}
	if n, got := list("", 1, 1); n != 3 || !slices.Equal(got, []string{accent}) {
		t.Fatalf("page: %d %v", n, got)
	}
	for q, want := range map[string][]string{
		"week":                   {plain},
		"subject:weekly":         {plain},
		"from:weekly":            nil,
		"text:chart":             {plain},
		`"weekly rep"`:           {plain},
		`"report weekly"`:        nil,
		"cafe":                   {accent},
		"CRÈME":                  {accent},
		"text:deja":              {accent},
		"from:zoe":               {accent},
		"to:alice":               {accent},
		"tag:signup-42":          {accent},
		"visible":                {html},
		"text:color":             nil,
		"text:style":             nil,
		"is:unread week":         {plain},
		"is:read":                nil,
		"smaller:1 week":         nil,
		`' \ & | ! ( ) : * <->`:  {html, accent, plain},
		`"'); DROP TABLE x; --"`: nil,
	} {
		if _, got := list(q, 0, 10); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %v, want %v", q, got, want)
		}
	}

	// Get, Open, SetSeen seen from the other node and published.
	evs := events(t, a)
	sum, err := br.SetSeen("alice", plain, true)
	if err != nil || !sum.Seen || sum.Subject != "Weekly report" {
		t.Fatalf("SetSeen = %+v, %v", sum, err)
	}
	waitKind(t, evs, store.EventUpdated, plain)
	if got, _ := a.Browser().Get("alice", plain); !got.Seen {
		t.Fatal("seen not visible on the other node")
	}
	if _, got := list("is:read", 0, 10); !slices.Equal(got, []string{plain}) {
		t.Fatalf("is:read = %v", got)
	}
	rc, sum, err := br.Open("alice", plain)
	if body := readAll(t, rc, err); body != msg("Weekly report", "numbers and charts") || sum.Size != int64(len(body)) {
		t.Fatalf("Open = %q (size %d)", body, sum.Size)
	}
	if _, err := br.Get("alice", "nosuchid"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(missing) = %v", err)
	}

	// Delete: refused while node A's POP3 session holds the maildrop.
	md, err := a.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := br.Delete("alice", []string{plain}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Delete under a lease = %v, want ErrLocked", err)
	}
	md.Close()
	gone, err := br.Delete("alice", []string{plain, "nosuchid"})
	if err != nil || !slices.Equal(gone, []string{plain}) {
		t.Fatalf("Delete = %v, %v", gone, err)
	}
	waitKind(t, evs, store.EventDeleted, plain)
	if n, _ := list("", 0, 10); n != 2 {
		t.Fatalf("after Delete %d messages", n)
	}
}

// Arrival: in recording order, after a marker, the newest; a marker the
// mailbox never held is ErrNotFound unless it has the form of an id.
func TestArrival(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	br := s.Browser()
	if _, ok, err := br.Arrival("carol", store.Query{}, "", false); ok || err != nil {
		t.Fatalf("empty: %v %v", ok, err)
	}
	first := deliver(t, s, msg("one", "x"), "carol")
	second := deliver(t, s, msg("two", "x"), "carol")
	third := deliver(t, s, msg("three", "x"), "carol")
	got := func(after string, newest bool, q store.Query) string {
		t.Helper()
		sum, ok, err := br.Arrival("carol", q, after, newest)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ""
		}
		return sum.ID
	}
	if g := got("", false, store.Query{}); g != first {
		t.Fatalf("first = %s", g)
	}
	if g := got(first, false, store.Query{}); g != second {
		t.Fatalf("after first = %s", g)
	}
	if g := got("", true, store.Query{}); g != third {
		t.Fatalf("newest = %s", g)
	}
	if g := got(first, false, store.Query{Subject: []string{"three"}}); g != third {
		t.Fatalf("after first, subject three = %s", g)
	}
	if g := got(third, false, store.Query{}); g != "" {
		t.Fatalf("after the last = %s", g)
	}
	// A marker of id form gone from the mailbox marks its time.
	if _, err := br.Delete("carol", []string{second}); err != nil {
		t.Fatal(err)
	}
	if g := got(second, false, store.Query{}); g != third {
		t.Fatalf("after deleted second = %s", g)
	}
	if _, _, err := br.Arrival("carol", store.Query{}, "not-an-id", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bad marker = %v", err)
	}
	// SearchIDs and Precomputed answer IMAP for INBOX by any case.
	m, err := br.SearchIDs("carol", "inbox", store.Query{Subject: []string{"thr"}})
	if err != nil || len(m) != 1 || !m[third] {
		t.Fatalf("SearchIDs = %v, %v", m, err)
	}
}

func waitKind(t *testing.T, ch chan store.Event, kind store.EventKind, id string) {
	t.Helper()
	waitEvent(t, ch, func(ev store.Event) bool { return ev.Kind == kind && slices.Contains(ev.IDs, id) })
}
