package shared

import (
	"errors"
	"slices"
	"testing"

	"postoffice/internal/store"
)

// Mailboxes, HasMailbox, CreateMailbox and Usage as seen from another
// node; a listed message removed since is ErrNotFound even while its
// blob lives on for another mailbox.
func TestAdmin(t *testing.T) {
	e := sharedEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	if err := a.CreateMailbox("carol"); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateMailbox("carol"); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateMailbox("../x"); !errors.Is(err, store.ErrBadMailbox) {
		t.Errorf("bad name: %v", err)
	}
	text := msg("shared", "x")
	deliver(t, a, text, "alice", "bob")
	got, err := b.Mailboxes()
	if err != nil || !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Fatalf("Mailboxes %v %v", got, err)
	}
	for mb, want := range map[string]bool{"alice": true, "carol": true, "dave": false} {
		if has, err := b.HasMailbox(mb); err != nil || has != want {
			t.Errorf("HasMailbox(%s) %v %v", mb, has, err)
		}
	}
	if u, err := b.Usage("dave"); err != nil || u != (store.Usage{}) {
		t.Errorf("Usage of a missing mailbox %+v %v", u, err)
	}
	l, err := b.List("alice")
	if err != nil || len(l) != 1 {
		t.Fatalf("List %v %v", l, err)
	}
	md, err := a.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Commit([]int{0}); err != nil {
		t.Fatal(err)
	}
	md.Close()
	if _, err := l[0].Open(); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Open of a removed message: %v", err)
	}
	lb, err := b.List("bob")
	if err != nil || len(lb) != 1 {
		t.Fatalf("bob %v %v", lb, err)
	}
	rc, err := lb[0].Open()
	if got := readAll(t, rc, err); got != text {
		t.Fatalf("bob's copy %q", got)
	}
}
