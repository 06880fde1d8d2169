package maildir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"slices"
	"strings"
	"testing"
	"time"
)

func retStore(t *testing.T) *Maildir {
	t.Helper()
	m, err := New(filepath.Join(t.TempDir(), "mail"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func retDeliver(t *testing.T, m *Maildir, mailbox string, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id := m.NewID()
		if err := m.Deliver(context.Background(), id, []string{mailbox}, strings.NewReader("Subject: m\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func retIDs(t *testing.T, m *Maildir, mailbox string) []string {
	t.Helper()
	l, err := m.List(mailbox)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range l {
		out = append(out, e.ID)
	}
	return out
}

func TestPruneMaxMessagesKeepsNewest(t *testing.T) {
	m := retStore(t)
	ids := retDeliver(t, m, "bob", 5)
	var events []store.Event
	cancel := m.Subscribe(func(ev store.Event) { events = append(events, ev) })
	defer cancel()
	res, err := m.Prune("bob", store.RetentionPolicy{MaxMessages: 2}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 3 || res.Left != 2 || res.More || res.Bytes <= 0 {
		t.Errorf("result %+v", res)
	}
	if got := retIDs(t, m, "bob"); !slices.Equal(got, ids[3:]) {
		t.Errorf("left %v, want the newest %v", got, ids[3:])
	}
	if len(events) != 1 || events[0].Kind != store.EventDeleted || !slices.Equal(events[0].IDs, ids[:3]) {
		t.Errorf("events %+v", events)
	}
	// Nothing more to do.
	if res, err := m.Prune("bob", store.RetentionPolicy{MaxMessages: 2}, 0, time.Now()); err != nil || res.Removed != 0 {
		t.Errorf("second prune: %+v %v", res, err)
	}
}

func TestPruneMaxAge(t *testing.T) {
	m := retStore(t)
	ids := retDeliver(t, m, "bob", 2)
	// A foreign message, two days old by its modification time.
	old := filepath.Join(m.Root(), "bob", "cur", "old-message:2,S")
	if err := os.WriteFile(old, []byte("Subject: old\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	res, err := m.Prune("bob", store.RetentionPolicy{MaxAge: 24 * time.Hour}, 0, time.Now())
	if err != nil || res.Removed != 1 || res.Left != 2 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old message still there: %v", err)
	}
	if got := retIDs(t, m, "bob"); !slices.Equal(got, ids) {
		t.Errorf("left %v, want %v", got, ids)
	}
	// Seen from a day later, our messages are old too.
	res, err = m.Prune("bob", store.RetentionPolicy{MaxAge: 24 * time.Hour}, 0, time.Now().Add(25*time.Hour))
	if err != nil || res.Removed != 2 || res.Left != 0 {
		t.Fatalf("prune later: %+v %v", res, err)
	}
}

func TestPruneLimitLeavesBacklog(t *testing.T) {
	m := retStore(t)
	ids := retDeliver(t, m, "bob", 5)
	res, err := m.Prune("bob", store.RetentionPolicy{MaxMessages: 1}, 2, time.Now())
	if err != nil || res.Removed != 2 || !res.More || res.Left != 3 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	if got := retIDs(t, m, "bob"); !slices.Equal(got, ids[2:]) {
		t.Errorf("left %v, want %v (oldest first)", got, ids[2:])
	}
}

func TestPruneSkipsLockedMailbox(t *testing.T) {
	m := retStore(t)
	ids := retDeliver(t, m, "bob", 3)
	md, err := m.OpenMaildrop("bob")
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Prune("bob", store.RetentionPolicy{MaxMessages: 1}, 0, time.Now())
	if !errors.Is(err, store.ErrLocked) || res.Removed != 0 {
		t.Fatalf("prune of a locked mailbox: %+v %v", res, err)
	}
	if got := retIDs(t, m, "bob"); !slices.Equal(got, ids) {
		t.Errorf("locked mailbox changed: %v", got)
	}
	md.Close()
	if res, err := m.Prune("bob", store.RetentionPolicy{MaxMessages: 1}, 0, time.Now()); err != nil || res.Removed != 2 {
		t.Errorf("after unlock: %+v %v", res, err)
	}
}

func TestPruneZeroPolicyRemovesNothing(t *testing.T) {
	m := retStore(t)
	retDeliver(t, m, "bob", 2)
	if res, err := m.Prune("bob", store.RetentionPolicy{}, 0, time.Now().Add(1000*time.Hour)); err != nil || res.Removed != 0 {
		t.Errorf("%+v %v", res, err)
	}
	if n := len(retIDs(t, m, "bob")); n != 2 {
		t.Errorf("%d left", n)
	}
}

func TestMailboxesUsageList(t *testing.T) {
	m := retStore(t)
	retDeliver(t, m, "bob", 2)
	retDeliver(t, m, "alice", 1)
	os.Mkdir(filepath.Join(m.Root(), ".hidden"), 0o700)
	os.WriteFile(filepath.Join(m.Root(), "file"), nil, 0o600)
	names, err := m.Mailboxes()
	if err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Fatalf("mailboxes %v %v", names, err)
	}
	u, err := m.Usage("bob")
	l, _ := m.List("bob")
	if err != nil || u.Messages != 2 || len(l) != 2 || u.Bytes != l[0].Size+l[1].Size {
		t.Errorf("usage %+v %v, list %+v", u, err, l)
	}
	if u, err := m.Usage("nobody"); err != nil || u.Messages != 0 {
		t.Errorf("missing mailbox: %+v %v", u, err)
	}
	if _, err := m.Usage("../x"); !errors.Is(err, store.ErrBadMailbox) {
		t.Errorf("bad name: %v", err)
	}
}
