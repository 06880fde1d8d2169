package index_test

import (
	"context"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
	"strings"
	"testing"
	"time"
)

func newIndex(t testing.TB) (*maildir.Maildir, *index.Index) {
	t.Helper()
	m, err := maildir.New(t.TempDir(), maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	x := index.New(m, index.Options{})
	t.Cleanup(x.Close)
	return m, x
}

func deliverTest(t *testing.T, m *maildir.Maildir, mailbox, raw string) string {
	t.Helper()
	id := m.NewID()
	if err := m.Deliver(context.Background(), id, []string{mailbox}, strings.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return id
}

// The index follows changes made behind its back (a mail reader moving
// files, another tool dropping one in) and keeps ids and sizes equal to
// what POP3 reports.
func TestIndexFollowsMaildir(t *testing.T) {
	m, x := newIndex(t)
	a := deliverTest(t, m, "u", "From: a@x\r\nSubject: first\r\n\r\nbody\r\n")
	b := deliverTest(t, m, "u", "Subject: Test Email\nHello Bob,\n") // no blank line
	res, err := x.List("u", store.Query{}, 0, 10)
	if err != nil || res.Total != 2 || res.Messages[0].ID != b || res.Messages[1].ID != a {
		t.Fatalf("list: %+v %v", res, err)
	}
	if res.Messages[0].Subject != "Test Email" {
		t.Fatalf("broken header: %+v", res.Messages[0])
	}
	dir := filepath.Join(m.Root(), "u")
	// A mail reader marks a read and moves it; another tool drops a file in
	// with LF line ends.
	if err := os.Rename(filepath.Join(dir, "new", a+".eml"), filepath.Join(dir, "cur", a+".eml:2,S")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cur", "foreign-1:2,"), []byte("Subject: dropped\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "cur", "foreign-1:2,"), old, old)
	res, err = x.List("u", store.Query{}, 0, 10)
	if err != nil || res.Total != 3 {
		t.Fatalf("after external changes: %+v %v", res, err)
	}
	got := map[string]store.Summary{}
	for _, s := range res.Messages {
		got[s.ID] = s
	}
	if !got[a].Seen || got["foreign-1"].Subject != "dropped" {
		t.Fatalf("summaries: %+v", got)
	}
	md, err := m.OpenMaildrop("u")
	if err != nil {
		t.Fatal(err)
	}
	for _, mi := range md.Messages() {
		if s, ok := got[mi.ID]; !ok || s.Size != mi.Size {
			t.Errorf("POP3 %s size %d; index %+v", mi.ID, mi.Size, s)
		}
	}
	// While POP3 holds the lock, Delete refuses; flags still change.
	if _, err := x.Delete("u", []string{b}); err == nil || !strings.Contains(err.Error(), store.ErrLocked.Error()) {
		t.Fatalf("delete under lock: %v", err)
	}
	if s, err := x.SetSeen("u", b, true); err != nil || !s.Seen {
		t.Fatalf("set seen under POP3 lock: %+v %v", s, err)
	}
	md.Close()
	if n, err := x.Delete("u", []string{b, "foreign-1", "nope"}); err != nil || len(n) != 2 {
		t.Fatalf("delete: %v %v", n, err)
	}
	if _, _, err := x.Reindex("u", nil); err != nil {
		t.Fatal(err)
	}
	res, _ = x.List("u", store.Query{}, 0, 10)
	if res.Total != 1 || res.Messages[0].ID != a {
		t.Fatalf("after rebuild: %+v", res)
	}
	if _, err := x.List("../etc", store.Query{}, 0, 10); err != store.ErrBadMailbox {
		t.Fatalf("bad mailbox: %v", err)
	}
}

// The web listing ends the header where POP3 TOP and the CLI do
// (internal/mailheader): at the first line that is neither a field nor a
// continuation. A line with 8-bit octets in its "name" is body, so the
// From after it is body text, not the sender.
func TestSummaryHeaderEndsAsTOP(t *testing.T) {
	m, x := newIndex(t)
	id := deliverTest(t, m, "u", "Subject: seen\r\nCaf\xc3\xa9: x\r\nFrom: hidden@example.org\r\n\r\nbody\r\n")
	s, err := x.Get("u", id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Subject != "seen" || s.From != "" {
		t.Fatalf("summary %+v: want subject %q and no sender (the header ended at the 8-bit line)", s, "seen")
	}
}
