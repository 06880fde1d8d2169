package index_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
)

// Arrival finds messages in arrival order after a marker, the newest, by
// tag, and refuses an unknown foreign marker; a deleted marker made by
// NewID still marks its place by its time.
func TestArrivalOrderMarkersAndTags(t *testing.T) {
	m, x := newIndex(t)
	q := store.Query{Tags: []string{"t1"}}
	if _, ok, err := x.Arrival("u", q, "", false); ok || err != nil {
		t.Fatalf("empty mailbox: %v %v", ok, err)
	}
	a := deliverTest(t, m, "u", "To: a+T1@x.test\r\nSubject: a\r\n\r\nx\r\n")
	deliverTest(t, m, "u", "To: b+t2@x.test\r\nSubject: b\r\n\r\nx\r\n")
	c := deliverTest(t, m, "u", "X-Original-To: c+t1@x.test\r\nTo: someone@x.test\r\nSubject: c\r\n\r\nx\r\n")
	d := deliverTest(t, m, "u", "To: d+t1@x.test\r\nSubject: d\r\n\r\nx\r\n")
	for _, tc := range []struct {
		after  string
		newest bool
		want   string
	}{
		{"", false, a}, {a, false, c}, {c, false, d}, {d, false, ""}, {"", true, d},
	} {
		s, ok, err := x.Arrival("u", q, tc.after, tc.newest)
		if err != nil || ok != (tc.want != "") || ok && s.ID != tc.want {
			t.Errorf("Arrival(after %s, newest %v) = %s %v %v, want %s", tc.after, tc.newest, s.ID, ok, err, tc.want)
		}
		if ok && (len(s.Tags) != 1 || s.Tags[0] != "t1") {
			t.Errorf("tags of %s = %v", s.ID, s.Tags)
		}
	}
	if _, _, err := x.Arrival("u", q, "not-here", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown marker: %v, want ErrNotFound", err)
	}
	if _, err := x.Delete("u", []string{c}); err != nil {
		t.Fatal(err)
	}
	if s, ok, err := x.Arrival("u", q, c, false); err != nil || !ok || s.ID != d {
		t.Errorf("after deleted %s: %s %v %v, want %s", c, s.ID, ok, err, d)
	}
	// A message dropped into the Maildir by another program is seen at
	// once (the look reconciles with the directories).
	dir := filepath.Join(m.Root(), "u")
	if err := os.WriteFile(filepath.Join(dir, "new", "foreign-9"), []byte("To: e+t1@x.test\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, ok, err := x.Arrival("u", q, "", true); err != nil || !ok || s.ID != "foreign-9" {
		t.Errorf("newest after a foreign drop: %s %v %v", s.ID, ok, err)
	}
}

// The tags are kept in the index file: a second Index over the same
// Maildir (a restart) finds them.
func TestTagsPersistAcrossReopen(t *testing.T) {
	m, x := newIndex(t)
	id := deliverTest(t, m, "u", "To: a+keep@x.test\r\nSubject: a\r\n\r\nx\r\n")
	if err := x.Flush("u"); err != nil {
		t.Fatal(err)
	}
	x.Close()
	y := index.New(m, index.Options{NoBackground: true})
	defer y.Close()
	res, err := y.List("u", store.Query{Tags: []string{"keep"}}, 0, 10)
	if err != nil || res.Total != 1 || res.Messages[0].ID != id {
		t.Fatalf("after reopen: %+v %v", res, err)
	}
}
