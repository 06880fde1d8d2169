package shared

import (
	"errors"
	"slices"
	"testing"
	"time"

	"postoffice/internal/store"
)

// Node B cannot open a maildrop node A holds (RFC 1939 §8), nor can a
// second session of A; it can once A's session closed.
func TestLeaseAcrossNodes(t *testing.T) {
	e := sharedEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	deliver(t, a, msg("one", "x"), "alice")
	md, err := a.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Messages()) != 1 {
		t.Fatalf("snapshot %v", md.Messages())
	}
	if _, err := b.OpenMaildrop("alice"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("node B while A holds it: %v, want ErrLocked", err)
	}
	if _, err := a.OpenMaildrop("alice"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second session on A: %v, want ErrLocked", err)
	}
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
	md2, err := b.OpenMaildrop("alice")
	if err != nil {
		t.Fatalf("node B after A's Close: %v", err)
	}
	md2.Close()
	// A mailbox that does not exist is an empty maildrop.
	md3, err := b.OpenMaildrop("nobody")
	if err != nil || len(md3.Messages()) != 0 {
		t.Fatalf("new mailbox: %v %v", md3, err)
	}
	md3.Close()
}

// A lease its node renews outlives its TTL; once the node stops
// renewing (it died), another node takes it after the TTL.
func TestLeaseExpires(t *testing.T) {
	e := sharedEnv(t)
	ttl := time.Second
	a := e.node(t, func(o *Options) { o.LeaseTTL = ttl })
	b := e.node(t, func(o *Options) { o.LeaseTTL = ttl })
	id := deliver(t, a, msg("kept", "x"), "alice")
	mdA, err := a.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	// Three TTLs pass while A renews.
	end := time.Now().Add(3 * ttl)
	for time.Now().Before(end) {
		if _, err := b.OpenMaildrop("alice"); !errors.Is(err, store.ErrLocked) {
			t.Fatalf("while A renews: %v, want ErrLocked", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A dies: its background work stops, its lease is not released.
	a.cancel()
	a.bg.Wait()
	deadline := time.Now().Add(10 * ttl)
	for {
		md, err := b.OpenMaildrop("alice")
		if err == nil {
			defer md.Close()
			break
		}
		if !errors.Is(err, store.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("after A stopped renewing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A's session, its lease lost, removes nothing.
	if err := mdA.Commit([]int{0}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Commit after the lease was lost: %v, want ErrLocked", err)
	}
	if got := ids(t, b, "alice"); !slices.Equal(got, []string{id}) {
		t.Fatalf("left %v", got)
	}
}

// Commit and MarkSeen on node A are seen from node B: the rows, the
// flags, the events.
func TestCommitMarkSeenAcrossNodes(t *testing.T) {
	e := sharedEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	evB := events(t, b)
	id0 := deliver(t, a, msg("0", "x"), "alice")
	id1 := deliver(t, a, msg("1", "x"), "alice")
	id2 := deliver(t, a, msg("2", "x"), "alice")
	md, err := a.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := md.Messages(); len(got) != 3 || got[0].ID != id0 || got[2].ID != id2 {
		t.Fatalf("snapshot %v", got)
	}
	rc, err := md.Open(1)
	if got := readAll(t, rc, err); got != msg("1", "x") {
		t.Fatalf("Open(1) %q", got)
	}
	before := count(t, e, `SELECT highestmodseq FROM folders`)
	if err := md.MarkSeen(0); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, evB, func(ev store.Event) bool { return ev.Kind == store.EventUpdated && ev.IDs[0] == id0 })
	if n := count(t, e, `SELECT count(*) FROM messages WHERE id = $1 AND '\Seen' = ANY(flags) AND modseq > $2`, id0, before); n != 1 {
		t.Error("no \\Seen with a new modseq")
	}
	if err := md.MarkSeen(0); err != nil {
		t.Fatal(err)
	}
	if err := md.Commit([]int{1}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, evB, func(ev store.Event) bool { return ev.Kind == store.EventDeleted })
	if !slices.Equal(ev.IDs, []string{id1}) || ev.Mailbox != "alice" {
		t.Errorf("deleted event %+v", ev)
	}
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, b, "alice"); !slices.Equal(got, []string{id0, id2}) {
		t.Fatalf("node B lists %v", got)
	}
	if n := count(t, e, `SELECT count(*) FROM blobs`); n != 2 {
		t.Errorf("%d blobs after Commit, want 2 (the removed one's collected)", n)
	}
	md, err = b.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	if len(md.Messages()) != 2 {
		t.Fatalf("B's snapshot %v", md.Messages())
	}
}

// Prune never removes from a maildrop a POP3 session of any node holds;
// free, it removes the oldest.
func TestPruneLocked(t *testing.T) {
	e := sharedEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	deliver(t, a, msg("old", "x"), "alice")
	newer := deliver(t, a, msg("new", "x"), "alice")
	md, err := a.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	pol := store.RetentionPolicy{MaxMessages: 1}
	if _, err := b.Prune("alice", pol, 0, time.Now()); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Prune under a lease: %v", err)
	}
	if got := ids(t, b, "alice"); len(got) != 2 {
		t.Fatalf("removed under a lease: %v", got)
	}
	md.Close()
	res, err := b.Prune("alice", pol, 0, time.Now())
	if err != nil || res.Removed != 1 || res.Left != 1 {
		t.Fatalf("Prune: %+v %v", res, err)
	}
	if got := ids(t, a, "alice"); !slices.Equal(got, []string{newer}) {
		t.Fatalf("left %v", got)
	}
}
