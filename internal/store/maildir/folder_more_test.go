package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/store"
)

// TestDovecotFilesRoundTrip: the dovecot-uidlist, dovecot-keywords and
// subscriptions Dovecot 2.3.19 wrote (testdata/dovecot, from an imap
// session with mail_location = maildir:) read and write back byte for
// byte.
func TestDovecotFilesRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/dovecot/dovecot-uidlist")
	if err != nil {
		t.Fatal(err)
	}
	l, err := parseUIDList(data)
	if err != nil {
		t.Fatal(err)
	}
	if l.validity != 1796614770 || l.next != 3 || len(l.recs) != 2 || l.recs[1].base != "1796614769.M947121P11107.vm,S=9,W=10" {
		t.Fatalf("parsed %+v", l)
	}
	if got := l.bytes(); string(got) != string(data) {
		t.Fatalf("written\n%q\nwant\n%q", got, data)
	}
	// Extensions on records are kept as read.
	ext := "3 V5 N9 G00112233445566778899aabbccddeeff\n3 W1260 S1200 :a,S=1200\n8 :b\n"
	if l, err := parseUIDList([]byte(ext)); err != nil || string(l.bytes()) != ext || l.recs[0].base != "a,S=1200" {
		t.Fatalf("extensions: %v %q", err, l.bytes())
	}
	kw, err := readKeywords("testdata/dovecot/dovecot-keywords")
	if err != nil || !slices.Equal(kw, []string{"$Forwarded", "Junk"}) {
		t.Fatalf("keywords %v %v", kw, err)
	}
	if kd, _ := os.ReadFile("testdata/dovecot/dovecot-keywords"); string(keywordsBytes(kw)) != string(kd) {
		t.Fatalf("keywords written %q want %q", keywordsBytes(kw), kd)
	}
	sd, _ := os.ReadFile("testdata/dovecot/subscriptions")
	subs := parseSubscriptions(string(sd))
	if !slices.Equal(subs, []string{"Sent", "Entwürfe/Sub"}) {
		t.Fatalf("subscriptions %q", subs)
	}
	if got := subscriptionsBytes(subs); string(got) != string(sd) {
		t.Fatalf("subscriptions written %q want %q", got, sd)
	}
	if got := parseSubscriptions("Sent\nA/B\n"); !slices.Equal(got, []string{"Sent", "A/B"}) {
		t.Fatalf("plain subscriptions %q", got)
	}
	for _, bad := range []string{"", "2 V1 N1\n", "3 N1\n", "3 V1 N5\n2 :a\n1 :b\n", "3 V1 N5\n1 a\n", "3 V1 N5"} {
		if _, err := parseUIDList([]byte(bad)); !errors.Is(err, errCorruptUIDList) {
			t.Errorf("parse %q: %v, want corrupt", bad, err)
		}
	}
}

// dovecotInbox makes user's INBOX the one Dovecot wrote: its uidlist,
// keywords and two messages with LF line ends.
func dovecotInbox(t *testing.T, m *Maildir) string {
	t.Helper()
	if err := m.CreateMailbox("user"); err != nil {
		t.Fatal(err)
	}
	dir := m.mailboxDir("user")
	for _, f := range []string{"dovecot-uidlist", "dovecot-keywords"} {
		b, err := os.ReadFile("testdata/dovecot/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("1796614769.M944058P11107.vm,S=10,W=12:2,Sa", "Hello\nBye\n")
	write("1796614769.M947121P11107.vm,S=9,W=10:2,Fb", "abcdefgh\n")
	return dir
}

func TestFolderReadsDovecotMaildir(t *testing.T) {
	m := newFolderStore(t)
	dir := dovecotInbox(t, m)
	before, _ := os.ReadFile(filepath.Join(dir, uidlistName))
	f := openF(t, m, "inbox")
	st := syncF(t, f)
	if st.UIDValidity != 1796614770 || st.UIDNext != 3 || !slices.Equal(uidsOf(st), []uint32{1, 2}) {
		t.Fatalf("state %+v", st)
	}
	m1, m2 := st.Messages[0], st.Messages[1]
	if !slices.Equal(m1.Flags, []string{store.FlagSeen, "$Forwarded"}) || !slices.Equal(m2.Flags, []string{store.FlagFlagged, "Junk"}) {
		t.Fatalf("flags %v %v", m1.Flags, m2.Flags)
	}
	if m1.Size != 12 || m2.Size != 10 || m1.ID != "1796614769.M944058P11107.vm,S=10,W=12" {
		t.Fatalf("sizes/ids %+v %+v", m1, m2)
	}
	if got := readUID(t, f, 1); got != "Hello\r\nBye\r\n" {
		t.Fatalf("content %q", got)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, uidlistName)); string(after) != string(before) {
		t.Fatalf("uidlist rewritten though nothing changed:\n%s", after)
	}
	// A message delivered by SMTP gets UID 3 after Dovecot's.
	deliver(t, m, "Subject: new\r\n\r\nx\r\n", "user")
	st = syncF(t, f)
	if !slices.Equal(uidsOf(st), []uint32{1, 2, 3}) || st.UIDValidity != 1796614770 {
		t.Fatalf("after delivery %+v", uidsOf(st))
	}
	after, _ := os.ReadFile(filepath.Join(dir, uidlistName))
	if !strings.HasPrefix(string(after), "3 V1796614770 N4 G902e4538712a166b632b000083ecc375\n1 :1796614769.M944058P11107.vm,S=10,W=12\n") {
		t.Fatalf("uidlist %s", after)
	}
}

func TestFolderLostAndCorruptUIDList(t *testing.T) {
	m := newFolderStore(t)
	deliver(t, m, "a\r\n", "user")
	deliver(t, m, "b\r\n", "user")
	dir := m.mailboxDir("user")
	f := openF(t, m, store.Inbox)
	st := syncF(t, f)
	v0 := st.UIDValidity
	if err := os.Remove(filepath.Join(dir, uidlistName)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Another process finds the list lost: a larger UIDVALIDITY, known
	// from the modseq log's header.
	m2, _ := New(m.Root(), Options{})
	f2 := openF(t, m2, store.Inbox)
	st = syncF(t, f2)
	if st.UIDValidity <= v0 || len(st.Messages) != 2 {
		t.Fatalf("lost list: validity %d (was %d), %d messages", st.UIDValidity, v0, len(st.Messages))
	}
	v1 := st.UIDValidity
	if err := os.WriteFile(filepath.Join(dir, uidlistName), []byte(fmt.Sprintf("3 V%d N3\n2 :x\n1 :y\n", v1)), 0o600); err != nil {
		t.Fatal(err)
	}
	st = syncF(t, f2)
	if st.UIDValidity <= v1 || len(st.Messages) != 2 {
		t.Fatalf("corrupt list: validity %d (was %d)", st.UIDValidity, v1)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, uidlistName+".corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
}

// TestFolderConcurrentSyncUniqueUIDs: Syncs of many goroutines of two
// Maildir values (two processes) on one folder while messages arrive never
// give two messages one UID, nor one message two.
func TestFolderConcurrentSyncUniqueUIDs(t *testing.T) {
	m := newFolderStore(t)
	m2, err := New(m.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uint32]string{} // uid -> id
	byID := map[string]uint32{}
	check := func(st *store.FolderState) error {
		mu.Lock()
		defer mu.Unlock()
		for _, msg := range st.Messages {
			if id, ok := seen[msg.UID]; ok && id != msg.ID {
				return fmt.Errorf("uid %d is %s and %s", msg.UID, id, msg.ID)
			}
			if u, ok := byID[msg.ID]; ok && u != msg.UID {
				return fmt.Errorf("%s has uids %d and %d", msg.ID, u, msg.UID)
			}
			seen[msg.UID], byID[msg.ID] = msg.ID, msg.UID
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 40 {
			id := m.NewID()
			if err := m.Deliver(t.Context(), id, []string{"user"}, strings.NewReader("x\r\n")); err != nil {
				errs <- err
				return
			}
		}
	}()
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mm := m
			if g%2 == 1 {
				mm = m2
			}
			f, err := mm.OpenFolder("user", store.Inbox)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for range 20 {
				st, err := f.Sync()
				if err == nil {
					err = check(st)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f := openF(t, m2, store.Inbox)
	st := syncF(t, f)
	if err := check(st); err != nil || len(st.Messages) != 40 {
		t.Fatalf("%v, %d messages", err, len(st.Messages))
	}
}

func TestFolderFlagsKeywordsModseq(t *testing.T) {
	m := newFolderStore(t)
	deliver(t, m, "a\r\n", "user")
	f := openF(t, m, store.Inbox)
	st := syncF(t, f)
	ms0, h0 := st.Messages[0].ModSeq, st.HighestModSeq
	if ms0 == 0 || h0 < ms0 {
		t.Fatalf("modseq %d highest %d", ms0, h0)
	}
	got, err := f.SetFlags([]uint32{1}, store.FlagsAdd, []string{`\seen`, "Work", `\Flagged`, `\Recent`})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !slices.Equal(got[0].Flags, []string{store.FlagFlagged, store.FlagSeen, "Work"}) || got[0].ModSeq <= h0 {
		t.Fatalf("SetFlags %+v", got)
	}
	id := got[0].ID
	if _, err := os.Stat(filepath.Join(m.mailboxDir("user"), "cur", id+".eml:2,FSa")); err != nil {
		t.Fatal(err)
	}
	if kw, _ := os.ReadFile(filepath.Join(m.mailboxDir("user"), keywordsName)); string(kw) != "0 Work\n" {
		t.Fatalf("dovecot-keywords %q", kw)
	}
	ms1 := got[0].ModSeq
	if got, _ = f.SetFlags([]uint32{1}, store.FlagsRemove, []string{"work"}); !slices.Equal(got[0].Flags, []string{store.FlagFlagged, store.FlagSeen}) || got[0].ModSeq <= ms1 {
		t.Fatalf("remove %+v", got)
	}
	ms2 := got[0].ModSeq
	if got, _ = f.SetFlags([]uint32{1, 99}, store.FlagsSet, []string{store.FlagDeleted}); len(got) != 1 || !slices.Equal(got[0].Flags, []string{store.FlagDeleted}) {
		t.Fatalf("set %+v", got)
	}
	ms3 := got[0].ModSeq
	if ms3 <= ms2 {
		t.Fatalf("modseq %d after %d", ms3, ms2)
	}
	// An unchanged STORE keeps the modseq.
	if got, _ = f.SetFlags([]uint32{1}, store.FlagsAdd, []string{store.FlagDeleted}); got[0].ModSeq != ms3 {
		t.Fatalf("unchanged store moved modseq %d -> %d", ms3, got[0].ModSeq)
	}
	// Another program's rename is a change too, seen by Sync.
	cur := filepath.Join(m.mailboxDir("user"), "cur")
	if err := os.Rename(filepath.Join(cur, id+".eml:2,T"), filepath.Join(cur, id+".eml:2,RT")); err != nil {
		t.Fatal(err)
	}
	st = syncF(t, f)
	if !slices.Equal(st.Messages[0].Flags, []string{store.FlagAnswered, store.FlagDeleted}) || st.Messages[0].ModSeq <= ms3 {
		t.Fatalf("after external rename %+v", st.Messages[0])
	}
	ms4, h4 := st.Messages[0].ModSeq, st.HighestModSeq
	f.Close()
	m2, _ := New(m.Root(), Options{})
	f2 := openF(t, m2, store.Inbox)
	st = syncF(t, f2)
	if st.Messages[0].ModSeq != ms4 || st.HighestModSeq != h4 {
		t.Fatalf("after reopen modseq %d highest %d, want %d %d", st.Messages[0].ModSeq, st.HighestModSeq, ms4, h4)
	}
	// 26 keywords fit, the 27th does not.
	var kws []string
	for i := range 25 {
		kws = append(kws, fmt.Sprintf("k%d", i))
	}
	if _, err := f2.SetFlags([]uint32{1}, store.FlagsAdd, kws); err != nil {
		t.Fatal(err)
	}
	if _, err := f2.SetFlags([]uint32{1}, store.FlagsAdd, []string{"one-too-many"}); !errors.Is(err, store.ErrTooManyKeywords) {
		t.Fatalf("27th keyword: %v", err)
	}
	if st = syncF(t, f2); !st.KeywordsFull || len(st.Keywords) != 26 {
		t.Fatalf("keywords %v full %v", st.Keywords, st.KeywordsFull)
	}
}

// TestFlagRenameShared: SetFlags, the web's SetSeen and POP3's MarkSeen
// rename the same way (cur/<base>:2,<letters>).
func TestFlagRenameShared(t *testing.T) {
	m := newFolderStore(t)
	a := deliver(t, m, "a\r\n", "user")
	b := deliver(t, m, "b\r\n", "user")
	c := deliver(t, m, "c\r\n", "user")
	f := openF(t, m, store.Inbox)
	syncF(t, f)
	if _, err := f.SetFlags([]uint32{1}, store.FlagsAdd, []string{store.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetSeen("user", b, "new/"+b+".eml", true); err != nil {
		t.Fatal(err)
	}
	md, err := m.OpenMaildrop("user")
	if err != nil {
		t.Fatal(err)
	}
	size := md.Messages()[2].Size
	if err := md.MarkSeen(2); err != nil {
		t.Fatal(err)
	}
	if got := readMsg(t, md, 2); int64(len(got)) != size || md.Messages()[2].ID != c {
		t.Fatalf("after MarkSeen: %q", got)
	}
	md.Close()
	for _, id := range []string{a, b, c} {
		if _, err := os.Stat(filepath.Join(m.mailboxDir("user"), "cur", id+".eml:2,S")); err != nil {
			t.Error(err)
		}
	}
	st := syncF(t, f)
	for _, msg := range st.Messages {
		if !slices.Equal(msg.Flags, []string{store.FlagSeen}) {
			t.Errorf("%s flags %v", msg.ID, msg.Flags)
		}
	}
}

func TestFolderExpungeOnlyDeletedAndLocked(t *testing.T) {
	m := newFolderStore(t)
	for range 3 {
		deliver(t, m, "x\r\n", "user")
	}
	f := openF(t, m, store.Inbox)
	syncF(t, f)
	if _, err := f.SetFlags([]uint32{1, 3}, store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	md, err := m.OpenMaildrop("user")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Expunge(nil); !errors.Is(err, store.ErrLocked) || len(got) != 0 {
		t.Fatalf("expunge under a POP3 session: %v %v", got, err)
	}
	if _, err := f.Move([]uint32{2}, "Trash"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("move under a POP3 session: %v", err)
	}
	if n := len(syncF(t, f).Messages); n != 3 {
		t.Fatalf("%d messages left while locked", n)
	}
	md.Close()
	got, err := f.Expunge([]uint32{3, 2})
	if err != nil || !slices.Equal(got, []uint32{3}) {
		t.Fatalf("expunge 2,3: %v %v", got, err)
	}
	got, err = f.Expunge(nil)
	if err != nil || !slices.Equal(got, []uint32{1}) {
		t.Fatalf("expunge all: %v %v", got, err)
	}
	if st := syncF(t, f); !slices.Equal(uidsOf(st), []uint32{2}) {
		t.Fatalf("left %v", uidsOf(st))
	}
}

func TestFolderCopyMoveAppend(t *testing.T) {
	m := newFolderStore(t)
	if _, err := m.ListFolders("user"); err != nil {
		t.Fatal(err)
	}
	id1 := deliver(t, m, "one\r\n", "user")
	deliver(t, m, "two\r\n", "user")
	in := openF(t, m, store.Inbox)
	syncF(t, in)
	in.SetFlags([]uint32{2}, store.FlagsAdd, []string{store.FlagFlagged, "Work"})
	var events []store.Event
	var mu sync.Mutex
	cancel := m.Subscribe(func(ev store.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() })
	defer cancel()

	res, err := in.Copy([]uint32{2, 1}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	arch := openF(t, m, "Archive")
	ast := syncF(t, arch)
	if res.UIDValidity != ast.UIDValidity || !slices.Equal(res.Source, []uint32{1, 2}) || !slices.Equal(res.Dest, []uint32{1, 2}) {
		t.Fatalf("copy %+v", res)
	}
	if ast.Messages[0].ID != id1 || !slices.Equal(ast.Messages[1].Flags, []string{store.FlagFlagged, "Work"}) {
		t.Fatalf("archive %+v", ast.Messages)
	}
	// A second copy: the names are taken, fresh ids.
	res, err = in.Copy([]uint32{1}, "Archive")
	if err != nil || !slices.Equal(res.Dest, []uint32{3}) {
		t.Fatalf("copy again %+v %v", res, err)
	}
	if st := syncF(t, arch); st.Messages[2].ID == id1 || readUID(t, arch, 3) != "one\r\n" {
		t.Fatalf("second copy %+v", st.Messages[2])
	}
	// Move out of INBOX keeps the id.
	res, err = in.Move([]uint32{1}, "Trash")
	if err != nil || !slices.Equal(res.Source, []uint32{1}) || !slices.Equal(res.Dest, []uint32{1}) {
		t.Fatalf("move %+v %v", res, err)
	}
	tr := openF(t, m, "Trash")
	if st := syncF(t, tr); len(st.Messages) != 1 || st.Messages[0].ID != id1 {
		t.Fatalf("trash %+v", st.Messages)
	}
	if st := syncF(t, in); !slices.Equal(uidsOf(st), []uint32{2}) {
		t.Fatalf("inbox after move %v", uidsOf(st))
	}
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	uid, err := tr.Append(strings.NewReader("Subject: hi\n\nbare LF\n"), []string{store.FlagDraft}, date)
	if err != nil || uid != 2 {
		t.Fatalf("append %d %v", uid, err)
	}
	st := syncF(t, tr)
	if got := st.Messages[1]; !got.Received.Equal(date) || got.Size != int64(len("Subject: hi\r\n\r\nbare LF\r\n")) || !slices.Equal(got.Flags, []string{store.FlagDraft}) {
		t.Fatalf("appended %+v", got)
	}
	if readUID(t, tr, 2) != "Subject: hi\r\n\r\nbare LF\r\n" {
		t.Fatal("appended content")
	}
	mu.Lock()
	defer mu.Unlock()
	var inboxDeleted, archived int
	for _, ev := range events {
		if ev.Folder == "" && ev.Kind == store.EventDeleted && slices.Equal(ev.IDs, []string{id1}) {
			inboxDeleted++
		}
		if ev.Folder == "Archive" && ev.Kind == store.EventArrived {
			archived++
		}
	}
	if inboxDeleted != 1 || archived != 3 {
		t.Fatalf("events %+v", events)
	}
}

func TestFolderManagement(t *testing.T) {
	m := newFolderStore(t)
	list, err := m.ListFolders("user")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range list {
		names = append(names, fi.Name)
		if fi.Name != store.Inbox && !fi.Subscribed {
			t.Errorf("%s not subscribed", fi.Name)
		}
	}
	if !slices.Equal(names, []string{"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}) || list[4].SpecialUse != `\Sent` {
		t.Fatalf("list %+v", list)
	}
	if _, err := os.Stat(filepath.Join(m.mailboxDir("user"), ".Sent", maildirfolderName)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"a.b", "a//b", "/a", "a/", "INBOX/x", "inbox/x", "a\x01", "", strings.Repeat("x", 300)} {
		if err := m.CreateFolder("user", bad); !errors.Is(err, store.ErrBadFolder) {
			t.Errorf("create %q: %v", bad, err)
		}
	}
	if err := m.CreateFolder("user", "Entwürfe/Sub/Deep"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{".Entw&APw-rfe", ".Entw&APw-rfe.Sub", ".Entw&APw-rfe.Sub.Deep"} {
		if _, err := os.Stat(filepath.Join(m.mailboxDir("user"), d, "cur")); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.CreateFolder("user", "Entwürfe"); !errors.Is(err, store.ErrFolderExists) {
		t.Fatalf("create existing: %v", err)
	}
	if err := m.SetSubscribed("user", "Entwürfe/Sub", true); err != nil {
		t.Fatal(err)
	}
	f := openF(t, m, "Entwürfe/Sub")
	appendMsg(t, f, "x\r\n")
	v := syncF(t, f).UIDValidity
	f.Close()
	if err := m.DeleteFolder("user", "Entwürfe/Sub"); !errors.Is(err, store.ErrHasChildren) {
		t.Fatalf("delete parent: %v", err)
	}
	if err := m.DeleteFolder("user", "INBOX"); !errors.Is(err, store.ErrCannot) {
		t.Fatalf("delete INBOX: %v", err)
	}
	if err := m.RenameFolder("user", "Entwürfe", "Old/Drafts"); err != nil {
		t.Fatal(err)
	}
	g := openF(t, m, "Old/Drafts/Sub")
	if st := syncF(t, g); st.UIDValidity != v || !slices.Equal(uidsOf(st), []uint32{1}) {
		t.Fatalf("after rename %+v", st)
	}
	subs, _ := m.readSubscriptions("user")
	if !slices.Contains(subs, "Old/Drafts/Sub") || slices.Contains(subs, "Entwürfe/Sub") {
		t.Fatalf("subscriptions %v", subs)
	}
	if err := m.DeleteFolder("user", "Old/Drafts/Sub/Deep"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.OpenFolder("user", "Old/Drafts/Sub/Deep"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("open deleted: %v", err)
	}
	// RENAME INBOX moves its messages.
	deliver(t, m, "a\r\n", "user")
	if err := m.RenameFolder("user", "INBOX", "Saved"); err != nil {
		t.Fatal(err)
	}
	if st := syncF(t, openF(t, m, "Saved")); len(st.Messages) != 1 {
		t.Fatalf("saved %+v", st)
	}
	if st := syncF(t, openF(t, m, "INBOX")); len(st.Messages) != 0 {
		t.Fatalf("inbox %+v", st)
	}
	if p := Check(m.Root()); len(p) != 0 {
		t.Fatalf("check: %v", p)
	}
	// Leftovers in a folder's tmp/ go at Recover.
	if err := os.WriteFile(filepath.Join(m.mailboxDir("user"), ".Saved", "tmp", store.NewID()+tmpExt), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := m.Recover(); err != nil || n != 1 {
		t.Fatalf("recover %d %v", n, err)
	}
}

// TestFolderSeesOtherPrograms: a file another program copies into new/
// and one it removes are seen by Sync, and Changed fires.
func TestFolderSeesOtherPrograms(t *testing.T) {
	m := newFolderStore(t)
	deliver(t, m, "a\r\n", "user")
	f := openF(t, m, store.Inbox)
	syncF(t, f)
	select { // drain what the delivery sent
	case <-f.Changed():
	default:
	}
	dir := m.mailboxDir("user")
	if err := os.WriteFile(filepath.Join(dir, "new", "foreign-1"), []byte("x\ny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("Changed did not fire for a file copied into new/")
	}
	st := syncF(t, f)
	if len(st.Messages) != 2 || st.Messages[1].ID != "foreign-1" || st.Messages[1].Size != 6 {
		t.Fatalf("after cp %+v", st.Messages)
	}
	os.Remove(filepath.Join(dir, "new", "foreign-1"))
	select {
	case <-f.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("Changed did not fire for a removed file")
	}
	if st := syncF(t, f); !slices.Equal(uidsOf(st), []uint32{1}) {
		t.Fatalf("after rm %v", uidsOf(st))
	}
	// In-process changes fire at once.
	deliver(t, m, "b\r\n", "user")
	select {
	case <-f.Changed():
	default:
		t.Fatal("Changed did not fire for a delivery")
	}
}
