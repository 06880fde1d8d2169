package maildir

import (
	"errors"
	"os"
	"testing"
	"time"

	"postoffice/internal/store"
)

// TestExpungeWaitsForBriefLockHolder: an INBOX expunge while another
// brief holder (another session's expunge, retention) has the maildrop
// lock waits for it instead of failing; one while a POP3 maildrop is open
// fails with ErrLocked and removes nothing.
func TestExpungeWaitsForBriefLockHolder(t *testing.T) {
	m := newFolderStore(t)
	f := openF(t, m, store.Inbox)
	a := appendMsg(t, f, "Subject: a\r\n\r\na\r\n", store.FlagDeleted)
	b := appendMsg(t, f, "Subject: b\r\n\r\nb\r\n", store.FlagDeleted)

	lf, err := m.lockMailbox("user")
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(200*time.Millisecond, func() { lf.Close() })
	removed, err := f.Expunge([]uint32{a})
	if err != nil || len(removed) != 1 || removed[0] != a {
		t.Fatalf("expunge behind a brief holder: %v %v", removed, err)
	}

	md, err := m.OpenMaildrop("user")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	removed, err = f.Expunge([]uint32{b})
	if !errors.Is(err, store.ErrLocked) || len(removed) != 0 {
		t.Fatalf("expunge while POP3 holds the maildrop: %v %v", removed, err)
	}
	if st := syncF(t, f); len(st.Messages) != 1 || st.Messages[0].UID != b {
		t.Fatalf("after the refused expunge: %v", uidsOf(st))
	}
}

// TestSyncSharesUnchangedState: Sync returns the same state while nothing
// changed, and a new one after a change.
func TestSyncSharesUnchangedState(t *testing.T) {
	m := newFolderStore(t)
	f := openF(t, m, store.Inbox)
	appendMsg(t, f, "Subject: a\r\n\r\na\r\n")
	g := openF(t, m, store.Inbox)
	time.Sleep(2 * scanSlack)
	s1 := syncF(t, f) // rescans: the directory changed since the last scan
	s2, s3 := syncF(t, f), syncF(t, g)
	if s2 != s1 || s3 != s1 {
		t.Fatalf("unchanged folder: states %p %p %p", s1, s2, s3)
	}
	uid := appendMsg(t, g, "Subject: b\r\n\r\nb\r\n")
	s4 := syncF(t, f)
	if s4 == s1 || len(s4.Messages) != 2 || s4.Messages[1].UID != uid || len(s1.Messages) != 1 {
		t.Fatalf("after an append: %v (old state %v)", uidsOf(s4), uidsOf(s1))
	}
}

// TestFolderStateLingers: a folder closed and opened again within
// folderLinger finds its listing (the same state, no rescan); after it,
// the state is made anew.
func TestFolderStateLingers(t *testing.T) {
	old := folderLinger
	folderLinger = 200 * time.Millisecond
	defer func() { folderLinger = old }()
	m := newFolderStore(t)
	f, err := m.OpenFolder("user", store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	appendMsg(t, f, "Subject: a\r\n\r\na\r\n")
	time.Sleep(2 * scanSlack)
	s1 := syncF(t, f)
	f.Close()
	g, err := m.OpenFolder("user", store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if s2 := syncF(t, g); s2 != s1 {
		t.Fatalf("reopened at once: a new state")
	}
	g.Close()
	time.Sleep(400 * time.Millisecond)
	h := openF(t, m, store.Inbox)
	if s3 := syncF(t, h); s3 == s1 || len(s3.Messages) != 1 {
		t.Fatalf("reopened after the linger: same state %v, %d messages", s3 == s1, len(s3.Messages))
	}
}

// TestDotlockOrphanedAndHeld: a lock file left by a dead holder (no flock
// on it, older than dotlockOrphan) is taken over at once; one a live
// holder has an flock on is waited for, however old.
func TestDotlockOrphanedAndHeld(t *testing.T) {
	dir := t.TempDir()
	target := dir + "/dovecot-uidlist"
	old := time.Now().Add(-2 * dotlockOrphan)
	if err := os.WriteFile(target+".lock", []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(target+".lock", old, old)
	start := time.Now()
	l, err := takeDotlock(target)
	if err != nil || time.Since(start) > time.Second {
		t.Fatalf("orphaned lock: %v after %v", err, time.Since(start))
	}
	// Now held (flock) by l, and made to look old: another taker waits.
	os.Chtimes(target+".lock", old, old)
	got := make(chan error, 1)
	go func() {
		l2, err := takeDotlock(target)
		if err == nil {
			l2.release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("took a held lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	l.release()
	if err := <-got; err != nil {
		t.Fatalf("after the release: %v", err)
	}
}
