package storetest

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/store"
)

func testMaildrop(t *testing.T, p Pair) {
	sub(t, p, "Exclusive", func(t *testing.T) {
		deliver(t, p.A, message("lock", "x"), "lock")
		d, err := p.A.Store.OpenMaildrop("lock")
		must(t, "OpenMaildrop A", err)
		_, err = p.A.Store.OpenMaildrop("lock")
		errIs(t, "second OpenMaildrop on A", err, store.ErrLocked)
		_, err = p.B.Store.OpenMaildrop("lock")
		errIs(t, "OpenMaildrop on B while A holds it", err, store.ErrLocked)
		// Another mailbox is not locked.
		openDrop(t, p.B, "other").Close()
		must(t, "Close", d.Close())
		d2, err := p.B.Store.OpenMaildrop("lock")
		must(t, "OpenMaildrop on B after A closed", err)
		_, err = p.A.Store.OpenMaildrop("lock")
		errIs(t, "OpenMaildrop on A while B holds it", err, store.ErrLocked)
		must(t, "Close", d2.Close())
	})
	sub(t, p, "ExclusiveRace", func(t *testing.T) {
		// A and B open at the same moment: exactly one gets the lock.
		deliver(t, p.A, message("race", "x"), "race")
		for round := range 5 {
			var wg sync.WaitGroup
			drops := make([]store.Maildrop, 2)
			errs := make([]error, 2)
			for i, v := range []View{p.A, p.B} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					drops[i], errs[i] = v.Store.OpenMaildrop("race")
				}()
			}
			wg.Wait()
			won := 0
			for i := range 2 {
				switch {
				case errs[i] == nil:
					won++
				case !errors.Is(errs[i], store.ErrLocked):
					t.Fatalf("round %d: OpenMaildrop: %v", round, errs[i])
				}
			}
			for i, d := range drops {
				if errs[i] == nil {
					must(t, "Close", d.Close())
				}
			}
			if won != 1 {
				t.Fatalf("round %d: %d of two concurrent OpenMaildrop calls got the lock (%v)", round, won, errs)
			}
		}
	})
	sub(t, p, "MissingMailboxIsEmpty", func(t *testing.T) {
		d := openDrop(t, p.A, "never-delivered")
		if n := len(d.Messages()); n != 0 {
			t.Fatalf("%d messages in a mailbox never delivered to", n)
		}
	})
	sub(t, p, "Snapshot", func(t *testing.T) {
		first := deliver(t, p.A, message("first", "x"), "snap")
		d := openDrop(t, p.A, "snap")
		second := deliver(t, p.B, message("second", "y"), "snap")
		if got := ids(d.Messages()); !slices.Equal(got, []string{first}) {
			t.Fatalf("snapshot changed by a later delivery: %v", got)
		}
		must(t, "Close", d.Close())
		d = openDrop(t, p.B, "snap")
		if got := ids(d.Messages()); !slices.Equal(got, []string{first, second}) {
			t.Fatalf("next open: %v, want oldest first %v", got, []string{first, second})
		}
	})
	sub(t, p, "OpenExactSize", func(t *testing.T) {
		msgs := []string{
			message("lf", "a\nb\n\nc"),
			"Subject: crlf\r\n\r\nalready crlf\r\n",
			"Subject: no final newline\n\nlast line",
			"Subject: mixed\r\n\nbody\rwith a lone CR\n",
		}
		for _, m := range msgs {
			deliver(t, p.A, m, "sizes")
		}
		d := openDrop(t, p.B, "sizes")
		ms := d.Messages()
		if len(ms) != len(msgs) {
			t.Fatalf("%d messages, want %d", len(ms), len(msgs))
		}
		for i, m := range ms {
			got := readAll(t)(d.Open(i))
			if int64(len(got)) != m.Size {
				t.Errorf("message %d: Open yields %d octets, Size says %d", i, len(got), m.Size)
			}
			if !strings.HasSuffix(got, "\r\n") || hasBareLF(got) {
				t.Errorf("message %d: not CRLF throughout, ending in CRLF: %q", i, got)
			}
		}
	})
	sub(t, p, "CommitDurableAndSeenByOther", func(t *testing.T) {
		a := deliver(t, p.A, message("a", "x"), "commit")
		b := deliver(t, p.A, message("b", "x"), "commit")
		c := deliver(t, p.A, message("c", "x"), "commit")
		d := openDrop(t, p.A, "commit")
		must(t, "Commit", d.Commit([]int{0, 2}))
		must(t, "Close", d.Close())
		if got := listedIDs(t, p.B, "commit"); !slices.Equal(got, []string{b}) {
			t.Fatalf("B lists %v after A removed %s and %s, want [%s]", got, a, c, b)
		}
		d = openDrop(t, p.B, "commit")
		if got := ids(d.Messages()); !slices.Equal(got, []string{b}) {
			t.Fatalf("B's maildrop: %v", got)
		}
		if p.B.Browser == nil {
			return
		}
		if _, err := p.B.Browser.Get("commit", a); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Browser.Get of a committed message: %v, want ErrNotFound", err)
		}
	})
	sub(t, p, "MarkSeen", func(t *testing.T) {
		id := deliver(t, p.A, message("seen", "x"), "markseen")
		other := deliver(t, p.A, message("unseen", "x"), "markseen")
		d := openDrop(t, p.A, "markseen")
		before := slices.Clone(d.Messages())
		must(t, "MarkSeen", d.MarkSeen(0))
		if !slices.Equal(d.Messages(), before) {
			t.Fatalf("MarkSeen changed the listing: %v -> %v", before, d.Messages())
		}
		if p.B.Browser != nil {
			s, err := p.B.Browser.Get("markseen", id)
			must(t, "Browser.Get", err)
			if !s.Seen {
				t.Fatalf("B does not see the message as seen after MarkSeen")
			}
			if s, err := p.B.Browser.Get("markseen", other); err != nil || s.Seen {
				t.Fatalf("the other message: %+v, %v; want unseen", s, err)
			}
		}
		must(t, "MarkSeen again", d.MarkSeen(0))
		got := readAll(t)(d.Open(0))
		if int64(len(got)) != before[0].Size {
			t.Fatalf("after MarkSeen Open yields %d octets, Size %d", len(got), before[0].Size)
		}
		must(t, "Close", d.Close())
		d = openDrop(t, p.B, "markseen")
		if got := ids(d.Messages()); !slices.Equal(got, []string{id, other}) {
			t.Fatalf("after MarkSeen the maildrop lists %v", got)
		}
	})
}

func testEvents(t *testing.T, p Pair) {
	sub(t, p, "ArrivedUpdatedDeleted", func(t *testing.T) {
		ra, rb := record(t, p.A.Store), record(t, p.B.Store)
		msg := message("ev", "x")
		id := deliver(t, p.A, msg, "ev1", "ev2")
		for _, mb := range []string{"ev1", "ev2"} {
			ev := ra.wait(t, eventWait, "arrived in "+mb, isEvent(store.EventArrived, mb, "", id))
			if ev.Size != int64(len(crlf(msg))) {
				t.Errorf("EventArrived.Size %d, want %d", ev.Size, len(crlf(msg)))
			}
			if p.CrossEvents {
				rb.wait(t, eventWait, "arrived in "+mb+" on the other view", isEvent(store.EventArrived, mb, "", id))
			}
		}
		d := openDrop(t, p.A, "ev1")
		must(t, "MarkSeen", d.MarkSeen(0))
		ra.wait(t, eventWait, "updated by MarkSeen", isEvent(store.EventUpdated, "ev1", "", id))
		must(t, "Commit", d.Commit([]int{0}))
		ra.wait(t, eventWait, "deleted by Commit", isEvent(store.EventDeleted, "ev1", "", id))
		must(t, "Close", d.Close())
		if p.CrossEvents {
			rb.wait(t, eventWait, "updated on the other view", isEvent(store.EventUpdated, "ev1", "", id))
			rb.wait(t, eventWait, "deleted on the other view", isEvent(store.EventDeleted, "ev1", "", id))
		}

		if p.A.Browser == nil {
			return
		}
		_, err := p.A.Browser.SetSeen("ev2", id, true)
		must(t, "SetSeen", err)
		ra.wait(t, eventWait, "updated by SetSeen", isEvent(store.EventUpdated, "ev2", "", id))
		del, err := p.A.Browser.Delete("ev2", []string{id})
		must(t, "Browser.Delete", err)
		if !slices.Equal(del, []string{id}) {
			t.Fatalf("Browser.Delete returned %v", del)
		}
		ra.wait(t, eventWait, "deleted by Browser.Delete", isEvent(store.EventDeleted, "ev2", "", id))
		if p.CrossEvents {
			rb.wait(t, eventWait, "SetSeen's update on the other view", isEvent(store.EventUpdated, "ev2", "", id))
			rb.wait(t, eventWait, "Browser.Delete's deletion on the other view", isEvent(store.EventDeleted, "ev2", "", id))
		}
	})
	sub(t, p, "FolderChanges", func(t *testing.T) {
		// EventDeleted covers "any other removal through the store", and
		// Event.Folder names the folder ("" for INBOX).
		ra, rb := record(t, p.A.Store), record(t, p.B.Store)
		must(t, "CreateFolder", p.A.Store.CreateFolder("evf", "Work"))
		f := openFolder(t, p.A, "evf", "Work")
		u := appendMsg(t, f, message("w", "x"), store.FlagDeleted)
		id := syncState(t, f).Messages[0].ID
		gone, err := f.Expunge(nil)
		must(t, "Expunge", err)
		if !slices.Equal(gone, []uint32{u}) {
			t.Fatalf("Expunge removed %v", gone)
		}
		ra.wait(t, eventWait, "deleted by an Expunge of folder Work", isEvent(store.EventDeleted, "evf", "Work", id))
		if p.CrossEvents {
			rb.wait(t, eventWait, "the Expunge on the other view", isEvent(store.EventDeleted, "evf", "Work", id))
		}
		in := deliver(t, p.A, message("i", "x"), "evf")
		g := openFolder(t, p.A, "evf", "INBOX")
		st := syncState(t, g)
		_, err = g.SetFlags([]uint32{st.Messages[0].UID}, store.FlagsAdd, []string{store.FlagDeleted})
		must(t, "SetFlags", err)
		_, err = g.Expunge(nil)
		must(t, "Expunge INBOX", err)
		ra.wait(t, eventWait, "deleted by an Expunge of INBOX", isEvent(store.EventDeleted, "evf", "", in))
	})
	sub(t, p, "CancelStops", func(t *testing.T) {
		var n int
		done := make(chan struct{}, 16)
		cancel := p.A.Store.Subscribe(func(store.Event) { done <- struct{}{} })
		deliver(t, p.A, message("c1", "x"), "cancel")
		select {
		case <-done:
			n++
		case <-time.After(eventWait):
			t.Fatal("no event before cancel")
		}
		cancel()
		deliver(t, p.A, message("c2", "x"), "cancel")
		// The event of a delivery is published before Deliver returns
		// (fn is called on the delivering goroutine), so nothing can come
		// later from this view.
		select {
		case <-done:
			t.Fatal("event after cancel")
		default:
		}
		_ = n
	})
}

func testAdmin(t *testing.T, p Pair) {
	sub(t, p, "MailboxesAndCreate", func(t *testing.T) {
		deliver(t, p.A, message("m", "x"), "zed")
		must(t, "CreateMailbox", p.A.Store.CreateMailbox("amy"))
		must(t, "CreateMailbox again", p.A.Store.CreateMailbox("amy"))
		for _, v := range []View{p.A, p.B} {
			names, err := v.Store.Mailboxes()
			must(t, "Mailboxes", err)
			if !slices.IsSorted(names) || !slices.Contains(names, "amy") || !slices.Contains(names, "zed") {
				t.Fatalf("Mailboxes %v: want sorted, with amy and zed", names)
			}
			for mb, want := range map[string]bool{"amy": true, "zed": true, "nobody": false} {
				has, err := v.Store.HasMailbox(mb)
				must(t, "HasMailbox", err)
				if has != want {
					t.Fatalf("HasMailbox(%s) = %v, want %v", mb, has, want)
				}
			}
		}
		// CreateMailbox keeps the mail of a mailbox that has some.
		must(t, "CreateMailbox on a mailbox with mail", p.B.Store.CreateMailbox("zed"))
		if got := listedIDs(t, p.A, "zed"); len(got) != 1 {
			t.Fatalf("zed holds %v after CreateMailbox", got)
		}
		errIs(t, "CreateMailbox(\"a/b\")", p.A.Store.CreateMailbox("a/b"), store.ErrBadMailbox)
		errIs(t, "CreateMailbox(\"..\")", p.A.Store.CreateMailbox(".."), store.ErrBadMailbox)
	})
	sub(t, p, "UsageAndList", func(t *testing.T) {
		u, err := p.A.Store.Usage("nobody")
		must(t, "Usage", err)
		if u != (store.Usage{}) {
			t.Fatalf("Usage of a missing mailbox: %+v", u)
		}
		l, err := p.A.Store.List("nobody")
		must(t, "List", err)
		if len(l) != 0 {
			t.Fatalf("List of a missing mailbox: %v", l)
		}
		start := time.Now().Add(-time.Second)
		m1, m2 := message("u1", "short"), message("u2", strings.Repeat("longer\n", 100))
		id1 := deliver(t, p.A, m1, "usage")
		id2 := deliver(t, p.B, m2, "usage")
		end := time.Now().Add(time.Second)
		u, err = p.B.Store.Usage("usage")
		must(t, "Usage", err)
		if want := (store.Usage{Messages: 2, Bytes: int64(len(crlf(m1)) + len(crlf(m2)))}); u != want {
			t.Fatalf("Usage %+v, want %+v", u, want)
		}
		l, err = p.A.Store.List("usage")
		must(t, "List", err)
		d := openDrop(t, p.B, "usage")
		ms := d.Messages()
		if len(l) != 2 || l[0].ID != id1 || l[1].ID != id2 {
			t.Fatalf("List %v, want %s then %s", l, id1, id2)
		}
		for i, x := range l {
			if x.MessageInfo != ms[i] {
				t.Fatalf("List[%d] %+v differs from the maildrop's %+v", i, x.MessageInfo, ms[i])
			}
			if x.Received.Before(start) || x.Received.After(end) {
				t.Fatalf("List[%d].Received %v not within the delivery's time", i, x.Received)
			}
			if got := readAll(t)(x.Open()); int64(len(got)) != x.Size || got != crlf([]string{m1, m2}[i]) {
				t.Fatalf("List[%d].Open: %q", i, got)
			}
		}
		must(t, "Commit", d.Commit([]int{0}))
		must(t, "Close", d.Close())
		if _, err := l[0].Open(); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Listed.Open of a removed message: %v, want ErrNotFound", err)
		}
	})
	sub(t, p, "Prune", func(t *testing.T) {
		var all []string
		var sizes []int64
		for i := range 4 {
			m := message("p", strings.Repeat("x", i+1))
			all = append(all, deliver(t, p.A, m, "prune"))
			sizes = append(sizes, int64(len(crlf(m))))
		}
		ra := record(t, p.A.Store)
		res, err := p.A.Store.Prune("prune", store.RetentionPolicy{MaxMessages: 1}, 2, time.Now())
		must(t, "Prune", err)
		if want := (store.PruneResult{Removed: 2, Bytes: sizes[0] + sizes[1], Left: 2, More: true}); res != want {
			t.Fatalf("Prune with a limit: %+v, want %+v", res, want)
		}
		if got := listedIDs(t, p.B, "prune"); !slices.Equal(got, all[2:]) {
			t.Fatalf("after Prune B lists %v, want %v", got, all[2:])
		}
		ra.wait(t, eventWait, "deleted by Prune", isEvent(store.EventDeleted, "prune", "", all[0]))

		// Locked by a POP3 session on the other view: nothing removed.
		d := openDrop(t, p.B, "prune")
		_, err = p.A.Store.Prune("prune", store.RetentionPolicy{MaxMessages: 1}, 0, time.Now())
		errIs(t, "Prune while a maildrop is open", err, store.ErrLocked)
		must(t, "Close", d.Close())
		if got := listedIDs(t, p.A, "prune"); !slices.Equal(got, all[2:]) {
			t.Fatalf("a refused Prune removed something: %v", got)
		}

		res, err = p.A.Store.Prune("prune", store.RetentionPolicy{}, 0, time.Now())
		must(t, "Prune with the zero policy", err)
		if res.Removed != 0 {
			t.Fatalf("the zero policy removed messages: %+v", res)
		}
		res, err = p.B.Store.Prune("prune", store.RetentionPolicy{MaxAge: time.Hour}, 0, time.Now())
		must(t, "Prune by age", err)
		if res.Removed != 0 {
			t.Fatalf("MaxAge of an hour removed fresh mail: %+v", res)
		}
		res, err = p.B.Store.Prune("prune", store.RetentionPolicy{MaxAge: time.Hour}, 0, time.Now().Add(2*time.Hour))
		must(t, "Prune by age", err)
		if want := (store.PruneResult{Removed: 2, Bytes: sizes[2] + sizes[3], Left: 0}); res != want {
			t.Fatalf("Prune by age two hours later: %+v, want %+v", res, want)
		}
		if got := listedIDs(t, p.A, "prune"); len(got) != 0 {
			t.Fatalf("left after Prune by age: %v", got)
		}
	})
	sub(t, p, "PruneZeroPolicyLeft", func(t *testing.T) {
		deliver(t, p.A, message("z1", "x"), "prunezero")
		deliver(t, p.A, message("z2", "x"), "prunezero")
		res, err := p.B.Store.Prune("prunezero", store.RetentionPolicy{}, 0, time.Now())
		must(t, "Prune with the zero policy", err)
		// PruneResult.Left: the messages left in the mailbox.
		if want := (store.PruneResult{Left: 2}); res != want {
			t.Fatalf("the zero policy: %+v, want %+v", res, want)
		}
		res, err = p.B.Store.Prune("prunezero", store.RetentionPolicy{MaxMessages: 5}, 0, time.Now())
		must(t, "Prune under the cap", err)
		if want := (store.PruneResult{Left: 2}); res != want {
			t.Fatalf("a policy that removes nothing here: %+v, want %+v", res, want)
		}
	})
	sub(t, p, "ProbeAndFreeSpace", func(t *testing.T) {
		must(t, "Probe", p.A.Store.Probe())
		must(t, "FreeSpace", p.B.Store.FreeSpace())
		n, err := p.A.Store.Recover()
		must(t, "Recover", err)
		if n != 0 {
			t.Fatalf("Recover removed %d leftovers of a storage without crashes", n)
		}
	})
}
