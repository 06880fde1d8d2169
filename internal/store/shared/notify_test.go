package shared

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"postoffice/internal/store"
	"postoffice/internal/testsupport/engines"
)

// An arrival on node A reaches a subscriber on node B, and again after
// PostgreSQL restarted (B's listener reconnects and says so).
func TestEventsAcrossNodesAndRestart(t *testing.T) {
	c := engines.NewPostgres(t)
	ep, ak, sk, b := engines.S3(t)
	e := newEnv(t, c.CreateDatabase(t), ep, ak, sk, b)
	na, nb := e.node(t, nil), e.node(t, nil)
	evB := events(t, nb)
	reconnected := make(chan struct{}, 1)
	cancel := nb.onReconnect(func() {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	})
	defer cancel()
	id := deliver(t, na, msg("one", "x"), "alice")
	ev := waitEvent(t, evB, func(ev store.Event) bool { return ev.Kind == store.EventArrived })
	if ev.IDs[0] != id || ev.Mailbox != "alice" || ev.Folder != "" || ev.Size != int64(len(msg("one", "x"))) {
		t.Fatalf("event %+v", ev)
	}
	c.Stop(t)
	c.Start(t)
	select {
	case <-reconnected:
	case <-ctxT(t).Done():
		t.Fatal("B's listener did not reconnect")
	}
	var err error
	id2 := na.NewID()
	for range 10 {
		if err = na.Deliver(ctxT(t), id2, []string{"alice"}, strings.NewReader(msg("two", "x"))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, evB, func(ev store.Event) bool { return ev.Kind == store.EventArrived && ev.IDs[0] == id2 })
}

// An event with more ids than one notification holds reaches the other
// node whole, over several notifications.
func TestNotifySplitsLargeEvents(t *testing.T) {
	e := sharedEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	evB := events(t, b)
	var want []string
	for i := range 600 {
		want = append(want, fmt.Sprintf("%034d", i))
	}
	ev := store.Event{Kind: store.EventDeleted, Mailbox: "alice", IDs: want}
	err := pgx.BeginFunc(ctxT(t), e.pool, func(tx pgx.Tx) error { return a.notifyTx(context.Background(), tx, ev) })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	parts := 0
	for len(got) < len(want) {
		ev := waitEvent(t, evB, func(ev store.Event) bool { return ev.Kind == store.EventDeleted })
		got = append(got, ev.IDs...)
		parts++
	}
	if !slices.Equal(got, want) || parts < 2 {
		t.Fatalf("%d ids in %d notifications", len(got), parts)
	}
}
