package shared

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/auth"
	"postoffice/internal/backend"
	"postoffice/internal/imap"
	"postoffice/internal/store"
	"postoffice/internal/store/s3blob"
	"postoffice/internal/testsupport"
	"postoffice/internal/testsupport/engines"
)

func openF(t *testing.T, s *Store, mailbox, name string) store.Folder {
	t.Helper()
	f, err := s.OpenFolder(mailbox, name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func syncF(t *testing.T, f store.Folder) *store.FolderState {
	t.Helper()
	st, err := f.Sync()
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return st
}

func uidsOf(st *store.FolderState) []uint32 {
	var out []uint32
	for _, m := range st.Messages {
		out = append(out, m.UID)
	}
	return out
}

func names(l []store.FolderInfo) []string {
	var out []string
	for _, f := range l {
		out = append(out, f.Name)
	}
	return out
}

// TestFoldersManage: the default folders, CREATE with parents, DELETE and
// RENAME rules, subscriptions, names.
func TestFoldersManage(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	l, err := s.ListFolders("u")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l); !slices.Equal(got, []string{"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}) {
		t.Fatalf("first list: %q", got)
	}
	for _, f := range l[1:] {
		if !f.Subscribed || f.SpecialUse != specialUse(f.Name) || f.SpecialUse == "" {
			t.Errorf("default %+v", f)
		}
	}
	if l[0].Subscribed {
		t.Error("INBOX subscribed without SUBSCRIBE")
	}
	// A deleted default comes back, once.
	if err := s.DeleteFolder("u", "Junk"); err != nil {
		t.Fatal(err)
	}
	if l, _ = s.ListFolders("u"); len(l) != 6 {
		t.Fatalf("after delete of Junk: %q", names(l))
	}
	if err := s.CreateFolder("u", "A/B/C"); err != nil {
		t.Fatal(err)
	}
	l, _ = s.ListFolders("u")
	if got := names(l); !slices.Equal(got, []string{"INBOX", "A", "A/B", "A/B/C", "Archive", "Drafts", "Junk", "Sent", "Trash"}) {
		t.Fatalf("after create: %q", got)
	}
	for _, n := range []string{"A/B", "inbox", "INBOX"} {
		if err := s.CreateFolder("u", n); !errors.Is(err, store.ErrFolderExists) {
			t.Errorf("create %q: %v", n, err)
		}
	}
	for _, n := range []string{"", "/a", "a/", "a//b", "a.b", "INBOX/x", "inbox/x", "a\x01", "a\u0085", strings.Repeat("x", 201), "\xff"} {
		if err := s.CreateFolder("u", n); !errors.Is(err, store.ErrBadFolder) {
			t.Errorf("create %q: %v", n, err)
		}
	}
	if err := s.CreateFolder("u", "Grüße/日本"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFolder("u", "A/B"); !errors.Is(err, store.ErrHasChildren) {
		t.Errorf("delete A/B: %v", err)
	}
	if err := s.DeleteFolder("u", "inbox"); !errors.Is(err, store.ErrCannot) {
		t.Errorf("delete INBOX: %v", err)
	}
	if err := s.DeleteFolder("u", "Nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete Nope: %v", err)
	}
	if _, err := s.OpenFolder("u", "Nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("open Nope: %v", err)
	}

	// Rename keeps UIDVALIDITY and UIDs, subfolders and subscriptions
	// follow.
	c := openF(t, s, "u", "A/B/C")
	if _, err := c.Append(strings.NewReader(msg("in C", "x")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	before := syncF(t, c)
	if err := s.SetSubscribed("u", "A/B/C", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed("u", "Ghost", true); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameFolder("u", "A/B", "A/B/D"); !errors.Is(err, store.ErrCannot) {
		t.Errorf("rename into itself: %v", err)
	}
	if err := s.RenameFolder("u", "A/B", "Sent"); !errors.Is(err, store.ErrFolderExists) {
		t.Errorf("rename onto Sent: %v", err)
	}
	if err := s.RenameFolder("u", "Nope", "Nope2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rename Nope: %v", err)
	}
	if err := s.RenameFolder("u", "A/B", "X/Y"); err != nil {
		t.Fatal(err)
	}
	l, _ = s.ListFolders("u")
	got := names(l)
	for _, want := range []string{"A", "X", "X/Y", "X/Y/C"} {
		if !slices.Contains(got, want) {
			t.Errorf("after rename no %q: %q", want, got)
		}
	}
	if slices.Contains(got, "A/B") || slices.Contains(got, "A/B/C") {
		t.Errorf("old names stay: %q", got)
	}
	xc := openF(t, s, "u", "X/Y/C")
	after := syncF(t, xc)
	if after.UIDValidity != before.UIDValidity || !slices.Equal(uidsOf(after), uidsOf(before)) || after.UIDNext != before.UIDNext {
		t.Errorf("rename changed the folder: %+v -> %+v", before, after)
	}
	subs, err := s.Subscriptions("u")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(subs, "X/Y/C") || slices.Contains(subs, "A/B/C") || !slices.Contains(subs, "Ghost") {
		t.Errorf("subscriptions after rename: %q", subs)
	}
	if err := s.SetSubscribed("u", "Ghost", false); err != nil {
		t.Fatal(err)
	}
	if subs, _ = s.Subscriptions("u"); slices.Contains(subs, "Ghost") {
		t.Errorf("unsubscribe: %q", subs)
	}
	if err := s.SetSubscribed("u", "a..b", true); !errors.Is(err, store.ErrBadFolder) {
		t.Errorf("subscribe bad: %v", err)
	}
	// A folder deleted and made again gets a new UIDVALIDITY.
	if err := s.DeleteFolder("u", "X/Y/C"); err != nil {
		t.Fatal(err)
	}
	if _, err := xc.Sync(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("sync of a deleted folder: %v", err)
	}
	if err := s.CreateFolder("u", "X/Y/C"); err != nil {
		t.Fatal(err)
	}
	again := syncF(t, openF(t, s, "u", "X/Y/C"))
	if again.UIDValidity <= before.UIDValidity || len(again.Messages) != 0 {
		t.Errorf("re-created folder: %+v (was %d)", again, before.UIDValidity)
	}
}

// TestFolderMessages: flags, keywords, expunge, UIDs never reused, copy
// and move with their COPYUID, the same state while nothing changes.
func TestFolderMessages(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	id1 := deliver(t, s, msg("one", "1"), "u")
	id2 := deliver(t, s, msg("two", "2"), "u")
	in := openF(t, s, "u", "inbox")
	st := syncF(t, in)
	if !slices.Equal(uidsOf(st), []uint32{1, 2}) || st.UIDNext != 3 || st.Messages[0].ID != id1 || st.Messages[1].ID != id2 {
		t.Fatalf("state %+v", st)
	}
	if st.Messages[0].Size != int64(len(msg("one", "1"))) || st.Messages[0].Received.IsZero() {
		t.Errorf("message %+v", st.Messages[0])
	}
	if again := syncF(t, in); again != st {
		t.Error("Sync without a change returned another state")
	}
	got, err := in.SetFlags([]uint32{1, 2, 9}, store.FlagsAdd, []string{`\seen`, `\Deleted`, "$Work", `\Recent`})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Equal(got[0].Flags, []string{`\Seen`, `\Deleted`, "$Work"}) || got[0].ModSeq <= st.Messages[0].ModSeq {
		t.Fatalf("SetFlags: %+v", got)
	}
	st2 := syncF(t, in)
	if st2 == st || !slices.Equal(st2.Keywords, []string{"$Work"}) || st2.HighestModSeq < got[0].ModSeq {
		t.Fatalf("state after flags: %+v", st2)
	}
	// Keywords compare case-insensitively and keep the first spelling.
	got, _ = in.SetFlags([]uint32{2}, store.FlagsRemove, []string{"$WORK", `\Deleted`})
	if len(got) != 1 || !slices.Equal(got[0].Flags, []string{`\Seen`}) {
		t.Fatalf("remove: %+v", got)
	}
	got, _ = in.SetFlags([]uint32{2}, store.FlagsSet, []string{"$work", `\Flagged`, `\Draft`})
	if !slices.Equal(got[0].Flags, []string{`\Draft`, `\Flagged`, "$Work"}) {
		t.Fatalf("set: %+v", got)
	}
	// Unchanged messages keep their modseq.
	again, _ := in.SetFlags([]uint32{2}, store.FlagsAdd, []string{`\Flagged`})
	if again[0].ModSeq != got[0].ModSeq {
		t.Errorf("no change, new modseq %d -> %d", got[0].ModSeq, again[0].ModSeq)
	}
	// Expunge removes only \Deleted, and its UIDs are not given again.
	gone, err := in.Expunge(nil)
	if err != nil || !slices.Equal(gone, []uint32{1}) {
		t.Fatalf("expunge: %v %v", gone, err)
	}
	uid, err := in.Append(strings.NewReader(msg("three", "3")), []string{`\Seen`}, time.Time{})
	if err != nil || uid != 3 {
		t.Fatalf("append after expunge: uid %d, %v", uid, err)
	}
	st3 := syncF(t, in)
	if !slices.Equal(uidsOf(st3), []uint32{2, 3}) || st3.UIDNext != 4 {
		t.Fatalf("after expunge+append: %+v", st3)
	}
	if _, err := in.Open(1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("open expunged: %v", err)
	}

	// Copy: new rows, new ids, flags kept, COPYUID.
	if _, err := s.ListFolders("u"); err != nil {
		t.Fatal(err)
	}
	arch := openF(t, s, "u", "Archive")
	ast := syncF(t, arch)
	// Folder names other than INBOX are case-sensitive: no "archive".
	if _, err := in.Copy([]uint32{3}, "archive"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("copy to archive: %v", err)
	}
	res, err := in.Copy([]uint32{3, 2, 7}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	if res.UIDValidity != ast.UIDValidity || !slices.Equal(res.Source, []uint32{2, 3}) || !slices.Equal(res.Dest, []uint32{1, 2}) {
		t.Fatalf("COPYUID %+v", res)
	}
	ast = syncF(t, arch)
	if len(ast.Messages) != 2 || ast.Messages[0].ID == id2 || !slices.Equal(ast.Messages[0].Flags, []string{`\Draft`, `\Flagged`, "$Work"}) ||
		!slices.Equal(ast.Keywords, []string{"$Work"}) {
		t.Fatalf("archive after copy: %+v", ast)
	}
	if a, b := openAll(t, arch, 1), openAll(t, in, 2); a != b || a != msg("two", "2") {
		t.Fatalf("copy content %q vs %q", a, b)
	}
	// Move: the id stays, the source loses it, the destination gets it.
	res, err = arch.Move([]uint32{1}, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Source, []uint32{1}) || !slices.Equal(res.Dest, []uint32{4}) || res.UIDValidity != st.UIDValidity {
		t.Fatalf("move COPYUID %+v", res)
	}
	movedID := ast.Messages[0].ID
	ast2 := syncF(t, arch)
	if slices.Equal(uidsOf(ast2), uidsOf(ast)) || !slices.Equal(uidsOf(ast2), []uint32{2}) {
		t.Fatalf("archive after move: %+v", ast2)
	}
	st4 := syncF(t, in)
	if !slices.Equal(uidsOf(st4), []uint32{2, 3, 4}) || st4.Messages[2].ID != movedID {
		t.Fatalf("inbox after move: %+v", st4)
	}
	if _, err := in.Copy([]uint32{2}, "Nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("copy to Nope: %v", err)
	}
	// Deleting the folder: a blob shared with INBOX stays readable.
	if err := s.DeleteFolder("u", "Archive"); err != nil {
		t.Fatal(err)
	}
	if body := openAll(t, in, 3); body != msg("three", "3") {
		t.Errorf("after deleting the copy's folder: %q", body)
	}
}

// TestFolderKeywordLimit: a folder defines at most MaxFolderKeywords.
func TestFolderKeywordLimit(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	deliver(t, s, msg("k", "k"), "u")
	in := openF(t, s, "u", "INBOX")
	syncF(t, in)
	var kws []string
	for i := range MaxFolderKeywords - 1 {
		kws = append(kws, fmt.Sprintf("k%d", i))
	}
	if _, err := in.SetFlags([]uint32{1}, store.FlagsAdd, kws); err != nil {
		t.Fatal(err)
	}
	if st := syncF(t, in); st.KeywordsFull || len(st.Keywords) != MaxFolderKeywords-1 {
		t.Fatalf("%d keywords, full %v", len(st.Keywords), st.KeywordsFull)
	}
	if _, err := in.SetFlags([]uint32{1}, store.FlagsAdd, []string{"last"}); err != nil {
		t.Fatal(err)
	}
	if st := syncF(t, in); !st.KeywordsFull {
		t.Fatal("not full")
	}
	if _, err := in.SetFlags([]uint32{1}, store.FlagsAdd, []string{"onemore"}); !errors.Is(err, store.ErrTooManyKeywords) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := in.Append(strings.NewReader(msg("a", "a")), []string{"onemore"}, time.Time{}); !errors.Is(err, store.ErrTooManyKeywords) {
		t.Fatalf("append over the limit: %v", err)
	}
	// Defined keywords still work.
	if got, err := in.SetFlags([]uint32{1}, store.FlagsSet, []string{"K3"}); err != nil || !slices.Equal(got[0].Flags, []string{"k3"}) {
		t.Fatalf("set defined: %+v %v", got, err)
	}
	if n := count(t, e, `SELECT count(*) FROM blobs`); n != 1 {
		t.Errorf("a refused append left %d blobs", n)
	}
}

// TestFolderAppendBytes: bare LF becomes CRLF, Open yields exactly Size
// octets, the internal date is the one given.
func TestFolderAppendBytes(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	in := openF(t, s, "u", "INBOX")
	syncF(t, in)
	date := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	raw := "Subject: lf\nFrom: a@example.org\n\nline one\nline two\r\nno end"
	uid, err := in.Append(strings.NewReader(raw), []string{`\Draft`}, date)
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: lf\r\nFrom: a@example.org\r\n\r\nline one\r\nline two\r\nno end\r\n"
	if got := openAll(t, in, uid); got != want {
		t.Fatalf("stored %q", got)
	}
	st := syncF(t, in)
	m := st.Messages[0]
	if m.Size != int64(len(want)) || !m.Received.Equal(date) || !slices.Equal(m.Flags, []string{`\Draft`}) {
		t.Fatalf("message %+v", m)
	}
	// The web inbox and search see it too (the row has its summary).
	if n := count(t, e, `SELECT count(*) FROM messages WHERE subject = 'lf' AND fts @@ to_tsquery('simple', 'line')`); n != 1 {
		t.Errorf("summary rows: %d", n)
	}
}

// TestFolderLocked: while a POP3 lease is held, EXPUNGE and MOVE out of
// INBOX remove nothing (RFC 1939 §8); other folders are not locked.
func TestFolderLocked(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	deliver(t, s, msg("a", "a"), "u")
	in := openF(t, s, "u", "INBOX")
	syncF(t, in)
	if err := s.CreateFolder("u", "F"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.SetFlags(nil, store.FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctxT(t), `INSERT INTO maildrop_leases (mailbox_id, holder, expires)
		SELECT id, 'other-node', now() + interval '1 hour' FROM mailboxes WHERE name = 'u'`); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Expunge(nil); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("expunge under a lease: %v", err)
	}
	if _, err := in.Move([]uint32{1}, "F"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("move under a lease: %v", err)
	}
	if err := s.RenameFolder("u", "INBOX", "Old"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("rename INBOX under a lease: %v", err)
	}
	if _, err := s.OpenFolder("u", "Old"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused rename of INBOX made its folder: %v", err)
	}
	if st := syncF(t, in); len(st.Messages) != 1 {
		t.Fatalf("removed under a lease: %+v", st)
	}
	if _, err := in.Copy([]uint32{1}, "F"); err != nil {
		t.Fatalf("copy under a lease: %v", err)
	}
	f := openF(t, s, "u", "F")
	syncF(t, f)
	if gone, err := f.Expunge(nil); err != nil || len(gone) != 1 {
		t.Fatalf("expunge of F: %v %v", gone, err)
	}
	if _, err := e.pool.Exec(ctxT(t), `DELETE FROM maildrop_leases`); err != nil {
		t.Fatal(err)
	}
	if gone, err := in.Expunge([]uint32{1}); err != nil || !slices.Equal(gone, []uint32{1}) {
		t.Fatalf("expunge after the lease: %v %v", gone, err)
	}
	if n := count(t, e, `SELECT count(*) FROM blobs`); n != 0 {
		t.Errorf("%d blobs left after every message went", n)
	}
}

// TestRenameInbox: RFC 9051 §6.3.6: INBOX's messages move to the new
// folder, INBOX stays, empty, with its UIDVALIDITY.
func TestRenameInbox(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	a := deliver(t, s, msg("a", "a"), "u")
	b := deliver(t, s, msg("b", "b"), "u")
	in := openF(t, s, "u", "INBOX")
	st := syncF(t, in)
	if err := s.RenameFolder("u", "inbox", "Old/Mail"); err != nil {
		t.Fatal(err)
	}
	st2 := syncF(t, in)
	if len(st2.Messages) != 0 || st2.UIDValidity != st.UIDValidity || st2.UIDNext != st.UIDNext {
		t.Fatalf("INBOX after rename: %+v", st2)
	}
	old := syncF(t, openF(t, s, "u", "Old/Mail"))
	if len(old.Messages) != 2 || old.Messages[0].ID != a || old.Messages[1].ID != b {
		t.Fatalf("Old/Mail: %+v", old)
	}
	if err := s.RenameFolder("u", "INBOX", "Old/Mail"); !errors.Is(err, store.ErrFolderExists) {
		t.Errorf("rename INBOX onto a folder: %v", err)
	}
	if err := s.RenameFolder("u", "Old", "INBOX"); !errors.Is(err, store.ErrFolderExists) {
		t.Errorf("rename onto INBOX: %v", err)
	}
}

// TestFolderAcrossNodes: a flag change on another node gives a new state
// here, and Changed fires for local and remote changes.
func TestFolderAcrossNodes(t *testing.T) {
	e := sharedEnv(t)
	n1, n2 := e.node(t, nil), e.node(t, nil)
	deliver(t, n1, msg("a", "a"), "u")
	f1 := openF(t, n1, "u", "INBOX")
	f2 := openF(t, n2, "u", "INBOX")
	st := syncF(t, f1)
	syncF(t, f2)
	drain := func(f store.Folder) {
		for {
			select {
			case <-f.Changed():
			default:
				return
			}
		}
	}
	wait := func(f store.Folder, what string) {
		t.Helper()
		select {
		case <-f.Changed():
		case <-time.After(15 * time.Second):
			t.Fatalf("Changed did not fire: %s", what)
		}
	}
	drain(f1)
	if _, err := f2.SetFlags([]uint32{1}, store.FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	wait(f1, "flags on another node")
	st2 := syncF(t, f1)
	if st2 == st || !slices.Equal(st2.Messages[0].Flags, []string{`\Seen`}) {
		t.Fatalf("state after the other node's change: %+v", st2)
	}
	drain(f1)
	if _, err := f1.Append(strings.NewReader(msg("b", "b")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wait(f1, "a local append")
	wait(f2, "an append on another node")
	if st3 := syncF(t, f2); len(st3.Messages) != 2 {
		t.Fatalf("other node after append: %+v", st3)
	}
	// A change to another folder does not fire.
	if err := n1.CreateFolder("u", "Other"); err != nil {
		t.Fatal(err)
	}
	drain(f1)
	o := openF(t, n1, "u", "Other")
	if _, err := o.Append(strings.NewReader(msg("c", "c")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f1.Changed():
		t.Error("INBOX told of a change to Other")
	default:
	}
	// A folder renamed on another node: once synced, this Folder hears of
	// changes under the new name.
	if err := n2.RenameFolder("u", "Other", "Renamed"); err != nil {
		t.Fatal(err)
	}
	if st := syncF(t, o); len(st.Messages) != 1 {
		t.Fatalf("renamed folder: %+v", st)
	}
	drain(o)
	r2 := openF(t, n2, "u", "Renamed")
	if _, err := r2.Append(strings.NewReader(msg("d", "d")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wait(o, "an append to the renamed folder")
	if st := syncF(t, o); len(st.Messages) != 2 {
		t.Fatalf("renamed folder after append: %+v", st)
	}
}

type imapCounter struct{}

func (imapCounter) IMAPLogin(string)                        {}
func (imapCounter) StoreError(string)                       {}
func (imapCounter) AuthFailure(string, time.Duration, bool) {}

// TestIMAPOverShared: the IMAP backend serving the shared store on a real
// socket: SELECT, APPEND, FETCH, STORE, COPY, EXPUNGE.
func TestIMAPOverShared(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	deliver(t, s, "From: a@example.com\r\nTo: user@example.com\r\nSubject: first\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nhello one\r\n", "user")
	users := auth.SingleUser("user", "pass")
	thr := auth.NewThrottle(auth.ThrottleConfig{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	srv := &imap.Server{
		Backend: &backend.IMAP{
			Auth:        &backend.Authn{Users: func() *auth.Users { return users }, Throttle: thr, Counter: imapCounter{}, Proto: "imap"},
			Folders:     s,
			Counter:     imapCounter{},
			AppendLimit: 1 << 20,
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	addr := testsupport.Serve(t, srv, imap.ErrServerClosed)
	c := testsupport.Dial(t, addr)
	c.IMAPLogin("user", "pass")
	r := c.IMAP(`LIST "" "*"`, "OK *")
	if !r.Has(`* LIST (\HasNoChildren \Sent) "/" "Sent"`) {
		t.Errorf("LIST: %q", r.Untagged)
	}
	r = c.IMAP("SELECT INBOX", "OK [READ-WRITE] *")
	if !r.Has("* 1 EXISTS") || !r.Has("* OK [UIDNEXT 2] *") {
		t.Fatalf("SELECT: %q", r.Untagged)
	}
	r = c.IMAP("FETCH 1 (BODY[TEXT])", "OK *")
	if !r.Has("* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[TEXT] {11}\r\nhello one\r\n)") {
		t.Fatalf("FETCH: %q", r.Untagged)
	}
	body := "Subject: appended\nFrom: me@example.com\n\nbody line\n"
	c.Send(fmt.Sprintf("a APPEND INBOX (\\Flagged) {%d}\r\n", len(body)))
	c.Expect("+ *")
	c.Send(body + "\r\n")
	ra := c.IMAPUntil("a")
	if !testsupport.Glob("OK [APPENDUID * 2] *", ra.Status) {
		t.Fatalf("APPEND: %q", ra.Status)
	}
	r = c.IMAP("NOOP", "OK *")
	if !ra.Has("* 2 EXISTS") && !r.Has("* 2 EXISTS") {
		t.Fatalf("no EXISTS after APPEND: %q %q", ra.Untagged, r.Untagged)
	}
	want := strings.ReplaceAll(body, "\n", "\r\n")
	r = c.IMAP("UID FETCH 2 (RFC822.SIZE BODY.PEEK[])", "OK *")
	if !r.Has(fmt.Sprintf("* 2 FETCH (UID 2 RFC822.SIZE %d BODY[] {%d}\r\n%s)", len(want), len(want), want)) {
		t.Fatalf("FETCH appended: %q", r.Untagged)
	}
	r = c.IMAP(`STORE 1 +FLAGS (\Deleted $Done)`, "OK *")
	if !r.Has(`* 1 FETCH (UID 1 FLAGS (\Seen \Deleted $Done))`) {
		t.Fatalf("STORE: %q", r.Untagged)
	}
	c.IMAP("COPY 1:2 Archive", "OK [COPYUID * 1:2 1:2] *")
	r = c.IMAP("EXPUNGE", "OK *")
	if !r.Has("* 1 EXPUNGE") {
		t.Fatalf("EXPUNGE: %q", r.Untagged)
	}
	r = c.IMAP("SELECT Archive", "OK [READ-WRITE] *")
	if !r.Has("* 2 EXISTS") || !r.Has(`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Done)`) {
		t.Fatalf("SELECT Archive: %q", r.Untagged)
	}
	// Another node's change reaches this session.
	other := e.node(t, nil)
	of := openF(t, other, "user", "Archive")
	syncF(t, of)
	if _, err := of.SetFlags([]uint32{2}, store.FlagsAdd, []string{`\Answered`}); err != nil {
		t.Fatal(err)
	}
	// The change is committed: the next command shows it.
	r = c.IMAP("NOOP", "OK *")
	if !r.Has(`* 2 FETCH (UID 2 FLAGS (\Flagged \Answered))`) {
		t.Fatalf("the other node's STORE not shown: %q", r.Untagged)
	}
}

func openAll(t *testing.T, f store.Folder, uid uint32) string {
	t.Helper()
	rc, err := f.Open(uid)
	return readAll(t, rc, err)
}

// TestDeleteFolderBlobs: DELETE removes the folder's rows and the objects
// no other message refers to.
func TestDeleteFolderBlobs(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	deliver(t, s, msg("shared", "x"), "u")
	if err := s.CreateFolder("u", "F"); err != nil {
		t.Fatal(err)
	}
	f := openF(t, s, "u", "F")
	if _, err := f.Append(strings.NewReader(msg("own", "y")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	in := openF(t, s, "u", "INBOX")
	syncF(t, in)
	if _, err := in.Copy(nil, "F"); err != nil {
		t.Fatal(err)
	}
	var own string
	if err := e.pool.QueryRow(ctxT(t), `SELECT blob_key FROM messages WHERE subject = 'own'`).Scan(&own); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFolder("u", "F"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, e, `SELECT count(*) FROM messages`); n != 1 {
		t.Fatalf("%d rows after DELETE, want INBOX's 1", n)
	}
	if n := count(t, e, `SELECT count(*) FROM blobs`); n != 1 {
		t.Fatalf("%d blob rows after DELETE, want 1", n)
	}
	if _, err := s.blobs.Size(ctxT(t), own); err == nil {
		t.Errorf("the object of the deleted folder's own message is still there")
	}
	if got := openAll(t, in, 1); got != msg("shared", "x") {
		t.Errorf("INBOX's message after DELETE of its copy: %q", got)
	}
}

// TestFolderConcurrentNodes: APPENDs from two nodes at once to one folder
// get distinct UIDs, all visible to both.
func TestFolderConcurrentNodes(t *testing.T) {
	e := sharedEnv(t)
	n1, n2 := e.node(t, nil), e.node(t, nil)
	f1, f2 := openF(t, n1, "u", "INBOX"), openF(t, n2, "u", "INBOX")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	var mu sync.Mutex
	seen := map[uint32]bool{}
	for i := range 20 {
		f := f1
		if i%2 == 1 {
			f = f2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid, err := f.Append(strings.NewReader(msg(fmt.Sprint(i), "x")), nil, time.Time{})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[uid] {
				errs <- fmt.Errorf("uid %d twice", uid)
			}
			seen[uid] = true
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if a, b := syncF(t, f1), syncF(t, f2); len(a.Messages) != 20 || !slices.Equal(uidsOf(a), uidsOf(b)) || a.UIDNext != 21 {
		t.Fatalf("states %v / %v", uidsOf(a), uidsOf(b))
	}
}

// TestFolderEnginesDown: with S3 stopped an APPEND fails with
// ErrUnavailable and leaves no row; with PostgreSQL stopped the folder
// calls fail with ErrUnavailable; started again, they work.
func TestFolderEnginesDown(t *testing.T) {
	srv := engines.NewS3Server(t)
	pgc := engines.NewPostgres(t)
	e := newEnv(t, pgc.CreateDatabase(t), srv.Endpoint, srv.Access, srv.Secret, srv.CreateBucket(t))
	s := e.node(t, func(o *Options) { o.Timeout = 3 * time.Second })
	deliver(t, s, msg("before", "x"), "u")
	in := openF(t, s, "u", "INBOX")
	syncF(t, in)

	srv.Stop(t)
	if _, err := in.Append(strings.NewReader(msg("during", "x")), nil, time.Time{}); !isUnavailable(err) {
		t.Fatalf("Append with S3 stopped: %v", err)
	}
	if _, err := in.Open(1); !isUnavailable(err) {
		t.Fatalf("Open with S3 stopped: %v", err)
	}
	srv.Start(t)
	if st := syncF(t, in); len(st.Messages) != 1 {
		t.Fatalf("a failed APPEND left a row: %+v", st)
	}

	for len(in.Changed()) > 0 {
		<-in.Changed()
	}
	pgc.Stop(t)
	if _, err := in.Sync(); !isUnavailable(err) {
		t.Errorf("Sync with PostgreSQL stopped: %v", err)
	}
	if _, err := in.SetFlags([]uint32{1}, store.FlagsAdd, []string{`\Seen`}); !isUnavailable(err) {
		t.Errorf("SetFlags with PostgreSQL stopped: %v", err)
	}
	if _, err := in.Expunge(nil); !isUnavailable(err) {
		t.Errorf("Expunge with PostgreSQL stopped: %v", err)
	}
	if _, err := s.ListFolders("u"); !isUnavailable(err) {
		t.Errorf("ListFolders with PostgreSQL stopped: %v", err)
	}
	if err := s.CreateFolder("u", "New"); !isUnavailable(err) {
		t.Errorf("CreateFolder with PostgreSQL stopped: %v", err)
	}
	pgc.Start(t)
	// Notifications sent while the listener was away are lost: its
	// reconnection tells the open folders to look again.
	select {
	case <-in.Changed():
	case <-time.After(30 * time.Second):
		t.Fatal("Changed did not fire after the listener reconnected")
	}
	var err error
	for range 10 { // the pool drops the connections the stop broke as they fail
		if _, err = in.SetFlags([]uint32{1}, store.FlagsAdd, []string{`\Seen`}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if st := syncF(t, in); !slices.Equal(st.Messages[0].Flags, []string{`\Seen`}) {
		t.Fatalf("after restart: %+v", st)
	}
}

// TestFolderAppendReadError: a client that goes away during APPEND gets
// its error back, not the engines'; nothing is left: no row, no object.
func TestFolderAppendReadError(t *testing.T) {
	e := sharedEnv(t)
	s := e.node(t, nil)
	in := openF(t, s, "u", "INBOX")
	boom := errors.New("client went away")
	_, err := in.Append(&failingReader{strings.NewReader(msg("x", "partial")), boom}, nil, time.Time{})
	if !errors.Is(err, boom) || isUnavailable(err) {
		t.Fatalf("Append: %v, want the read error", err)
	}
	if st := syncF(t, in); len(st.Messages) != 0 || st.UIDNext != 1 {
		t.Fatalf("visible after a read error: %+v", st)
	}
	objects := 0
	if err := s.blobs.List(ctxT(t), "", func(o s3blob.Object) bool { objects++; return true }); err != nil {
		t.Fatal(err)
	}
	if objects != 0 || count(t, e, `SELECT count(*) FROM blobs`) != 0 {
		t.Errorf("%d objects left", objects)
	}
}

// TestSyncIncremental: a Folder synced after each of many changes (by
// itself, another node, deliveries, the web inbox) has the listing a
// Folder opened afresh reads whole.
func TestSyncIncremental(t *testing.T) {
	e := sharedEnv(t)
	n1, n2 := e.node(t, nil), e.node(t, nil)
	for i := range 5 {
		deliver(t, n1, msg(fmt.Sprint(i), "x"), "u")
	}
	if err := n1.CreateFolder("u", "F"); err != nil {
		t.Fatal(err)
	}
	f1 := openF(t, n1, "u", "INBOX")
	f2 := openF(t, n2, "u", "INBOX")
	ff := openF(t, n2, "u", "F")
	syncF(t, f1)
	syncF(t, f2)
	steps := []func() error{
		func() error {
			_, err := f2.SetFlags([]uint32{2, 4}, store.FlagsAdd, []string{`\Seen`, "$A"})
			return err
		},
		func() error { deliver(t, n2, msg("new", "x"), "u"); return nil },
		func() error { _, err := f2.SetFlags([]uint32{1, 2}, store.FlagsAdd, []string{`\Deleted`}); return err },
		func() error { _, err := f2.Expunge(nil); return err },
		func() error { _, err := f2.Move([]uint32{3}, "F"); return err },
		func() error { _, err := ff.Copy(nil, "INBOX"); return err },
		func() error { _, err := n2.Browser().SetSeen("u", syncF(t, f2).Messages[0].ID, true); return err },
		func() error {
			_, err := f2.Append(strings.NewReader(msg("app", "x")), []string{"$B"}, time.Time{})
			return err
		},
		func() error { _, err := f2.SetFlags([]uint32{4}, store.FlagsSet, []string{"$b"}); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got := syncF(t, f1)
		fresh := openF(t, n1, "u", "INBOX")
		want := syncF(t, fresh)
		fresh.Close()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d: incremental\n%+v\nwhole\n%+v", i, got, want)
		}
	}
}
