package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"postoffice/internal/store"
)

func folderNames(t *testing.T, v View, mailbox string) []string {
	t.Helper()
	fs, err := v.Store.ListFolders(mailbox)
	must(t, "ListFolders", err)
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func openFolder(t *testing.T, v View, mailbox, name string) store.Folder {
	t.Helper()
	f, err := v.Store.OpenFolder(mailbox, name)
	must(t, "OpenFolder "+name, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func syncState(t *testing.T, f store.Folder) *store.FolderState {
	t.Helper()
	st, err := f.Sync()
	must(t, "Sync", err)
	return st
}

func uids(st *store.FolderState) []uint32 {
	var out []uint32
	for _, m := range st.Messages {
		out = append(out, m.UID)
	}
	return out
}

func msgIDs(st *store.FolderState) []string {
	var out []string
	for _, m := range st.Messages {
		out = append(out, m.ID)
	}
	return out
}

func appendMsg(t *testing.T, f store.Folder, msg string, flags ...string) uint32 {
	t.Helper()
	uid, err := f.Append(strings.NewReader(msg), flags, time.Time{})
	must(t, "Append", err)
	return uid
}

func testFolders(t *testing.T, p Pair) {
	sub(t, p, "ListDefaults", func(t *testing.T) {
		fs, err := p.A.Store.ListFolders("fl")
		must(t, "ListFolders", err)
		if len(fs) == 0 || fs[0].Name != store.Inbox {
			t.Fatalf("ListFolders %v: INBOX not first", fs)
		}
		if !slices.IsSortedFunc(fs[1:], func(a, b store.FolderInfo) int { return strings.Compare(a.Name, b.Name) }) {
			t.Fatalf("ListFolders %v: not by name after INBOX", fs)
		}
		for _, def := range store.DefaultFolders {
			i := slices.IndexFunc(fs, func(f store.FolderInfo) bool { return f.Name == def.Name })
			if i < 0 || fs[i].SpecialUse != def.SpecialUse {
				t.Fatalf("ListFolders %v: no %s with %s", fs, def.Name, def.SpecialUse)
			}
		}
		if got := folderNames(t, p.B, "fl"); len(got) != len(fs) {
			t.Fatalf("B lists %v, A %v", got, fs)
		}
		// INBOX always opens, in any case.
		for _, n := range []string{"INBOX", "inbox", "InBoX"} {
			f, err := p.B.Store.OpenFolder("fl-new", n)
			must(t, "OpenFolder "+n, err)
			f.Close()
		}
		_, err = p.B.Store.OpenFolder("fl", "Nonexistent")
		errIs(t, "OpenFolder of a missing folder", err, store.ErrNotFound)
	})
	sub(t, p, "CreateWithParents", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fc", "Projects/2026/Q4"))
		names := folderNames(t, p.B, "fc")
		for _, n := range []string{"Projects", "Projects/2026", "Projects/2026/Q4"} {
			if !slices.Contains(names, n) {
				t.Fatalf("B lists %v: no %s", names, n)
			}
		}
		errIs(t, "CreateFolder of an existing folder", p.B.Store.CreateFolder("fc", "Projects/2026"), store.ErrFolderExists)
		errIs(t, "CreateFolder INBOX", p.B.Store.CreateFolder("fc", "inbox"), store.ErrFolderExists)
		for _, bad := range []string{"", "a//b", "INBOX/child", "x/./y", "tab\there"} {
			err := p.A.Store.CreateFolder("fc", bad)
			errIs(t, "CreateFolder "+strconvQuote(bad), err, store.ErrBadFolder)
		}
		openFolder(t, p.B, "fc", "Projects/2026/Q4")
		must(t, "CreateFolder UTF-8", p.A.Store.CreateFolder("fc", "Café/日本"))
		if names := folderNames(t, p.B, "fc"); !slices.Contains(names, "Café/日本") {
			t.Fatalf("UTF-8 folder not listed: %v", names)
		}
	})
	sub(t, p, "Delete", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fd", "Parent/Child"))
		errIs(t, "DeleteFolder with children", p.B.Store.DeleteFolder("fd", "Parent"), store.ErrHasChildren)
		errIs(t, "DeleteFolder INBOX", p.B.Store.DeleteFolder("fd", "INBOX"), store.ErrCannot)
		errIs(t, "DeleteFolder missing", p.B.Store.DeleteFolder("fd", "Nope"), store.ErrNotFound)
		f := openFolder(t, p.A, "fd", "Parent/Child")
		appendMsg(t, f, message("in child", "x"))
		must(t, "Close", f.Close())
		must(t, "DeleteFolder", p.B.Store.DeleteFolder("fd", "Parent/Child"))
		must(t, "DeleteFolder now childless", p.B.Store.DeleteFolder("fd", "Parent"))
		names := folderNames(t, p.A, "fd")
		if slices.Contains(names, "Parent") || slices.Contains(names, "Parent/Child") {
			t.Fatalf("deleted folders still listed: %v", names)
		}
		_, err := p.A.Store.OpenFolder("fd", "Parent/Child")
		errIs(t, "OpenFolder of a deleted folder", err, store.ErrNotFound)
		// A folder made again under the same name is new (RFC 9051 §6.3.5:
		// its messages are gone).
		must(t, "CreateFolder again", p.A.Store.CreateFolder("fd", "Parent/Child"))
		if st := syncState(t, openFolder(t, p.B, "fd", "Parent/Child")); len(st.Messages) != 0 {
			t.Fatalf("a re-created folder has the old messages: %v", st.Messages)
		}
	})
	sub(t, p, "RenameKeepsUIDs", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fr", "Old/Sub"))
		f := openFolder(t, p.A, "fr", "Old")
		appendMsg(t, f, message("r1", "x"))
		appendMsg(t, f, message("r2", "y"), store.FlagFlagged)
		before := syncState(t, f)
		must(t, "Close", f.Close())
		must(t, "CreateFolder", p.A.Store.CreateFolder("fr", "Taken"))
		errIs(t, "RenameFolder onto an existing folder", p.B.Store.RenameFolder("fr", "Old", "Taken"), store.ErrFolderExists)
		errIs(t, "RenameFolder of a missing folder", p.B.Store.RenameFolder("fr", "Missing", "Else"), store.ErrNotFound)
		must(t, "RenameFolder", p.B.Store.RenameFolder("fr", "Old", "New"))
		names := folderNames(t, p.A, "fr")
		if slices.Contains(names, "Old") || slices.Contains(names, "Old/Sub") ||
			!slices.Contains(names, "New") || !slices.Contains(names, "New/Sub") {
			t.Fatalf("after renaming Old to New: %v", names)
		}
		after := syncState(t, openFolder(t, p.A, "fr", "New"))
		if after.UIDValidity != before.UIDValidity || !slices.Equal(uids(after), uids(before)) ||
			!slices.Equal(msgIDs(after), msgIDs(before)) {
			t.Fatalf("rename changed UIDVALIDITY or UIDs: %d %v %v -> %d %v %v", before.UIDValidity,
				uids(before), msgIDs(before), after.UIDValidity, uids(after), msgIDs(after))
		}
		if !slices.Contains(after.Messages[1].Flags, store.FlagFlagged) {
			t.Fatalf("rename lost flags: %v", after.Messages[1].Flags)
		}
		_, err := p.A.Store.OpenFolder("fr", "Old")
		errIs(t, "OpenFolder of the old name", err, store.ErrNotFound)
	})
	sub(t, p, "RenameInbox", func(t *testing.T) {
		a := deliver(t, p.A, message("i1", "x"), "fi")
		b := deliver(t, p.A, message("i2", "x"), "fi")
		must(t, "RenameFolder INBOX", p.B.Store.RenameFolder("fi", "INBOX", "Saved"))
		saved := syncState(t, openFolder(t, p.A, "fi", "Saved"))
		if got := msgIDs(saved); !slices.Equal(got, []string{a, b}) {
			t.Fatalf("Saved holds %v, want %v", got, []string{a, b})
		}
		inbox := syncState(t, openFolder(t, p.A, "fi", "INBOX"))
		if len(inbox.Messages) != 0 {
			t.Fatalf("INBOX after its rename: %v", msgIDs(inbox))
		}
		if got := listedIDs(t, p.B, "fi"); len(got) != 0 {
			t.Fatalf("POP3 listing after INBOX was renamed: %v", got)
		}
		if names := folderNames(t, p.B, "fi"); names[0] != store.Inbox {
			t.Fatalf("INBOX gone after its rename: %v", names)
		}
		c := deliver(t, p.B, message("i3", "x"), "fi")
		if got := listedIDs(t, p.A, "fi"); !slices.Equal(got, []string{c}) {
			t.Fatalf("INBOX after a delivery following its rename: %v", got)
		}
	})
	sub(t, p, "Subscriptions", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fs", "Lists"))
		must(t, "SetSubscribed", p.A.Store.SetSubscribed("fs", "Lists", true))
		must(t, "SetSubscribed of a missing folder", p.A.Store.SetSubscribed("fs", "Ghost", true))
		subs, err := p.B.Store.Subscriptions("fs")
		must(t, "Subscriptions", err)
		if !slices.Contains(subs, "Lists") || !slices.Contains(subs, "Ghost") {
			t.Fatalf("Subscriptions %v", subs)
		}
		fs, err := p.B.Store.ListFolders("fs")
		must(t, "ListFolders", err)
		subs, err = p.A.Store.Subscriptions("fs") // ListFolders may have subscribed the defaults it made
		must(t, "Subscriptions", err)
		for _, f := range fs {
			if f.Subscribed != slices.Contains(subs, f.Name) {
				t.Fatalf("ListFolders %+v disagrees with Subscriptions %v", f, subs)
			}
		}
		must(t, "SetSubscribed Lists false", p.B.Store.SetSubscribed("fs", "Lists", false))
		fs, err = p.A.Store.ListFolders("fs")
		must(t, "ListFolders", err)
		for _, f := range fs {
			if f.Name == "Lists" && f.Subscribed {
				t.Fatalf("ListFolders shows Lists subscribed after unsubscribing")
			}
		}
		must(t, "SetSubscribed Lists", p.B.Store.SetSubscribed("fs", "Lists", true))
		must(t, "SetSubscribed false", p.B.Store.SetSubscribed("fs", "Ghost", false))
		subs, err = p.A.Store.Subscriptions("fs")
		must(t, "Subscriptions", err)
		if slices.Contains(subs, "Ghost") || !slices.Contains(subs, "Lists") {
			t.Fatalf("Subscriptions after unsubscribing Ghost: %v", subs)
		}
	})
	sub(t, p, "SyncUIDs", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fu", "Box"))
		f := openFolder(t, p.A, "fu", "Box")
		s1 := syncState(t, f)
		u1 := appendMsg(t, f, message("u1", "x"))
		u2 := appendMsg(t, f, message("u2", "x"))
		s3 := syncState(t, f)
		if s3 == s1 {
			t.Fatalf("Sync after Append returned the old state")
		}
		if got := uids(s3); !slices.Equal(got, []uint32{u1, u2}) || u2 <= u1 || s3.UIDNext <= u2 {
			t.Fatalf("UIDs %v (Append gave %d, %d), UIDNEXT %d", got, u1, u2, s3.UIDNext)
		}
		// The other view sees the same UIDs.
		g := openFolder(t, p.B, "fu", "Box")
		if st := syncState(t, g); st.UIDValidity != s3.UIDValidity || !slices.Equal(uids(st), uids(s3)) {
			t.Fatalf("B: UIDVALIDITY %d UIDs %v; A: %d %v", st.UIDValidity, uids(st), s3.UIDValidity, uids(s3))
		}
		// Expunge the highest UID: it is never given again.
		_, err := f.SetFlags([]uint32{u2}, store.FlagsAdd, []string{store.FlagDeleted})
		must(t, "SetFlags", err)
		gone, err := f.Expunge(nil)
		must(t, "Expunge", err)
		if !slices.Equal(gone, []uint32{u2}) {
			t.Fatalf("Expunge removed %v, want [%d]", gone, u2)
		}
		u3 := appendMsg(t, g, message("u3", "x"))
		if u3 <= u2 {
			t.Fatalf("UID %d given after %d was expunged", u3, u2)
		}
		st := syncState(t, f)
		if got := uids(st); !slices.Equal(got, []uint32{u1, u3}) || st.UIDValidity != s3.UIDValidity {
			t.Fatalf("after expunge and append: UIDs %v UIDVALIDITY %d", got, st.UIDValidity)
		}
	})
	sub(t, p, "SyncSamePointer", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fp", "Box"))
		f := openFolder(t, p.A, "fp", "Box")
		s1 := syncState(t, f)
		if s2 := syncState(t, f); s2 != s1 {
			t.Fatalf("Sync of a new folder without a change returned a new state")
		}
		appendMsg(t, f, message("p1", "x"))
		s3 := syncState(t, f)
		if s3 == s1 || len(s3.Messages) != 1 {
			t.Fatalf("Sync after Append: %+v", s3)
		}
		if s4 := syncState(t, f); s4 != s3 {
			t.Fatalf("Sync without a change after an Append returned a new state")
		}
		g := openFolder(t, p.A, "fp", "Box")
		if s5 := syncState(t, g); s5 != s3 {
			t.Fatalf("a second Folder of this view on an unchanged folder holds another copy of the state")
		}
	})
	sub(t, p, "SetFlags", func(t *testing.T) {
		f := openFolder(t, p.A, "ff", "INBOX")
		u := appendMsg(t, f, message("flags", "x"))
		before := syncState(t, f)
		res, err := f.SetFlags([]uint32{u, 99999}, store.FlagsAdd, []string{"$Label1", store.FlagFlagged, store.FlagSeen})
		must(t, "SetFlags add", err)
		if len(res) != 1 || res[0].UID != u {
			t.Fatalf("SetFlags returned %+v, want only UID %d (99999 does not exist)", res, u)
		}
		if want := []string{store.FlagSeen, store.FlagFlagged, "$Label1"}; !sameSet(res[0].Flags, want) {
			t.Fatalf("flags after add %v, want %v", res[0].Flags, want)
		}
		if !canonical(res[0].Flags) {
			t.Fatalf("flags %v: system flags must come before keywords", res[0].Flags)
		}
		if res[0].ModSeq <= before.Messages[0].ModSeq {
			t.Fatalf("modseq %d did not grow from %d", res[0].ModSeq, before.Messages[0].ModSeq)
		}
		g := openFolder(t, p.B, "ff", "INBOX")
		st := syncState(t, g)
		if !sameSet(st.Messages[0].Flags, res[0].Flags) || !slices.Contains(st.Keywords, "$Label1") {
			t.Fatalf("B sees flags %v keywords %v", st.Messages[0].Flags, st.Keywords)
		}
		if st.HighestModSeq < res[0].ModSeq {
			t.Fatalf("HIGHESTMODSEQ %d below a message's %d", st.HighestModSeq, res[0].ModSeq)
		}
		res, err = g.SetFlags([]uint32{u}, store.FlagsRemove, []string{store.FlagFlagged, "$Label1"})
		must(t, "SetFlags remove", err)
		if !sameSet(res[0].Flags, []string{store.FlagSeen}) {
			t.Fatalf("flags after remove %v", res[0].Flags)
		}
		res, err = f.SetFlags([]uint32{u}, store.FlagsSet, []string{store.FlagAnswered, "Work"})
		must(t, "SetFlags set", err)
		if !sameSet(res[0].Flags, []string{store.FlagAnswered, "Work"}) {
			t.Fatalf("flags after set %v", res[0].Flags)
		}
		// \Seen through IMAP is the web inbox's and POP3's seen flag.
		id := syncState(t, f).Messages[0].ID
		s, err := p.B.Browser.Get("ff", id)
		must(t, "Browser.Get", err)
		if s.Seen {
			t.Fatalf("Browser shows the message seen after \\Seen was removed")
		}
		_, err = g.SetFlags([]uint32{u}, store.FlagsAdd, []string{store.FlagSeen})
		must(t, "SetFlags", err)
		if s, _ := p.A.Browser.Get("ff", id); !s.Seen {
			t.Fatalf("Browser does not show \\Seen set through IMAP")
		}
	})
	sub(t, p, "ExpungeOnlyDeleted", func(t *testing.T) {
		f := openFolder(t, p.A, "fe", "INBOX")
		u1 := appendMsg(t, f, message("e1", "x"), store.FlagDeleted)
		u2 := appendMsg(t, f, message("e2", "x"))
		u3 := appendMsg(t, f, message("e3", "x"), store.FlagDeleted)
		u4 := appendMsg(t, f, message("e4", "x"), store.FlagDeleted)
		gone, err := f.Expunge([]uint32{u4, u2, u3})
		must(t, "Expunge", err)
		if !slices.Equal(gone, []uint32{u3, u4}) {
			t.Fatalf("Expunge(u4,u2,u3) removed %v, want [%d %d] ascending", gone, u3, u4)
		}
		gone, err = f.Expunge(nil)
		must(t, "Expunge(nil)", err)
		if !slices.Equal(gone, []uint32{u1}) {
			t.Fatalf("Expunge(nil) removed %v, want [%d]", gone, u1)
		}
		if got := uids(syncState(t, openFolder(t, p.B, "fe", "INBOX"))); !slices.Equal(got, []uint32{u2}) {
			t.Fatalf("B sees %v after expunges", got)
		}
	})
	sub(t, p, "ExpungeLockedByPOP3", func(t *testing.T) {
		deliver(t, p.A, message("l1", "x"), "fx")
		f := openFolder(t, p.A, "fx", "INBOX")
		st := syncState(t, f)
		u := st.Messages[0].UID
		_, err := f.SetFlags([]uint32{u}, store.FlagsAdd, []string{store.FlagDeleted})
		must(t, "SetFlags", err)
		must(t, "CreateFolder", p.A.Store.CreateFolder("fx", "Dest"))
		d := openDrop(t, p.B, "fx")
		_, err = f.Expunge(nil)
		errIs(t, "Expunge of INBOX under a POP3 session", err, store.ErrLocked)
		_, err = f.Move([]uint32{u}, "Dest")
		errIs(t, "Move from INBOX under a POP3 session", err, store.ErrLocked)
		if got := len(d.Messages()); got != 1 {
			t.Fatalf("the session's snapshot changed: %d", got)
		}
		if got := listedIDs(t, p.A, "fx"); len(got) != 1 {
			t.Fatalf("a refused Expunge removed something: %v", got)
		}
		if dest := syncState(t, openFolder(t, p.A, "fx", "Dest")); len(dest.Messages) != 0 {
			t.Fatalf("a refused Move copied: %v", msgIDs(dest))
		}
		must(t, "Close", d.Close())
		gone, err := f.Expunge(nil)
		must(t, "Expunge after the session", err)
		if !slices.Equal(gone, []uint32{u}) {
			t.Fatalf("Expunge removed %v", gone)
		}
	})
	sub(t, p, "CopyMove", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fm", "Src"))
		f := openFolder(t, p.A, "fm", "Src")
		u1 := appendMsg(t, f, message("c1", "one"), store.FlagFlagged, "$Work")
		u2 := appendMsg(t, f, message("c2", "two"))
		src := syncState(t, f)
		folderNames(t, p.A, "fm") // creates the default folders
		archive := syncState(t, openFolder(t, p.B, "fm", "Archive"))
		res, err := f.Copy([]uint32{u2, u1}, "Archive")
		must(t, "Copy", err)
		if res.UIDValidity != archive.UIDValidity || !slices.Equal(res.Source, []uint32{u1, u2}) || len(res.Dest) != 2 {
			t.Fatalf("Copy result %+v (Archive UIDVALIDITY %d)", res, archive.UIDValidity)
		}
		g := openFolder(t, p.B, "fm", "Archive")
		st := syncState(t, g)
		if !slices.Equal(uids(st), res.Dest) {
			t.Fatalf("Archive has UIDs %v, Copy said %v", uids(st), res.Dest)
		}
		if !sameSet(st.Messages[0].Flags, []string{store.FlagFlagged, "$Work"}) {
			t.Fatalf("Copy lost flags: %v", st.Messages[0].Flags)
		}
		want := readAll(t)(f.Open(u1))
		if got := readAll(t)(g.Open(res.Dest[0])); got != want {
			t.Fatalf("copy content %q, want %q", got, want)
		}
		if got := uids(syncState(t, f)); !slices.Equal(got, []uint32{u1, u2}) {
			t.Fatalf("Copy changed the source: %v", got)
		}
		_, err = f.Copy([]uint32{u1}, "NoSuchFolder")
		errIs(t, "Copy to a missing folder", err, store.ErrNotFound)

		res, err = f.Move([]uint32{u1}, "Trash")
		must(t, "Move", err)
		if !slices.Equal(res.Source, []uint32{u1}) || len(res.Dest) != 1 {
			t.Fatalf("Move result %+v", res)
		}
		if got := uids(syncState(t, f)); !slices.Equal(got, []uint32{u2}) {
			t.Fatalf("after Move the source has %v", got)
		}
		trash := syncState(t, openFolder(t, p.B, "fm", "Trash"))
		if len(trash.Messages) != 1 || trash.Messages[0].ID != src.Messages[0].ID || trash.Messages[0].UID != res.Dest[0] {
			t.Fatalf("Trash %+v: want the moved message with id %s, UID %d", trash.Messages, src.Messages[0].ID, res.Dest[0])
		}
	})
	sub(t, p, "AppendDateFlags", func(t *testing.T) {
		folderNames(t, p.A, "fa") // creates the default folders
		f := openFolder(t, p.A, "fa", "Drafts")
		date := time.Date(2020, 2, 29, 13, 14, 15, 0, time.UTC)
		msg := "Subject: appended\nFrom: me@example.org\n\nbody line\nlast"
		u, err := f.Append(strings.NewReader(msg), []string{store.FlagDraft, store.FlagSeen}, date)
		must(t, "Append", err)
		st := syncState(t, openFolder(t, p.B, "fa", "Drafts"))
		if len(st.Messages) != 1 || st.Messages[0].UID != u {
			t.Fatalf("Drafts %+v, want UID %d", st.Messages, u)
		}
		m := st.Messages[0]
		if !m.Received.Equal(date) {
			t.Fatalf("internal date %v, want %v", m.Received, date)
		}
		if !sameSet(m.Flags, []string{store.FlagSeen, store.FlagDraft}) {
			t.Fatalf("flags %v", m.Flags)
		}
		got := readAll(t)(f.Open(u))
		if got != crlf(msg) || int64(len(got)) != m.Size {
			t.Fatalf("Open %q (Size %d), want %q", got, m.Size, crlf(msg))
		}
		before := time.Now().Add(-2 * time.Second)
		u2, err := f.Append(strings.NewReader(msg), nil, time.Time{})
		must(t, "Append without a date", err)
		for _, x := range syncState(t, f).Messages {
			if x.UID == u2 && (x.Received.Before(before) || x.Received.After(time.Now().Add(2*time.Second))) {
				t.Fatalf("Append with a zero date: internal date %v, want now", x.Received)
			}
		}
		_, err = f.Open(99999)
		errIs(t, "Open of a missing UID", err, store.ErrNotFound)
		cut := errors.New("literal cut")
		_, err = f.Append(&failingReader{data: []byte(msg), err: cut}, nil, time.Time{})
		if err == nil {
			t.Fatalf("Append with a failing reader succeeded")
		}
		if n := len(syncState(t, f).Messages); n != 2 {
			t.Fatalf("a failed Append left a message: %d messages", n)
		}
	})
	sub(t, p, "ChangedByOther", func(t *testing.T) {
		must(t, "CreateFolder", p.A.Store.CreateFolder("fch", "Watched"))
		f := openFolder(t, p.A, "fch", "Watched")
		syncState(t, f)
		ch := f.Changed()
		drain(ch)
		g := openFolder(t, p.B, "fch", "Watched")
		u := appendMsg(t, g, message("w", "x"))
		waitChanged(t, ch, "an Append by the other view")
		if got := uids(syncState(t, f)); !slices.Equal(got, []uint32{u}) {
			t.Fatalf("after Changed, Sync lists %v, want [%d]", got, u)
		}
		drain(ch)
		_, err := g.SetFlags([]uint32{u}, store.FlagsAdd, []string{store.FlagFlagged})
		must(t, "SetFlags", err)
		waitChanged(t, ch, "a flag change by the other view")
		if st := syncState(t, f); !slices.Contains(st.Messages[0].Flags, store.FlagFlagged) {
			t.Fatalf("after Changed, Sync shows flags %v", st.Messages[0].Flags)
		}
		// INBOX: a delivery by the other view.
		in := openFolder(t, p.A, "fch", "INBOX")
		syncState(t, in)
		ich := in.Changed()
		drain(ich)
		id := deliver(t, p.B, message("d", "x"), "fch")
		waitChanged(t, ich, "a delivery through the other view")
		if got := msgIDs(syncState(t, in)); !slices.Equal(got, []string{id}) {
			t.Fatalf("INBOX after Changed: %v", got)
		}
	})
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func waitChanged(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(eventWait):
		t.Fatalf("Changed did not fire within %v after %s", eventWait, what)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// canonical: system flags (a backslash) before keywords.
func canonical(flags []string) bool {
	kw := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			if kw {
				return false
			}
		} else {
			kw = true
		}
	}
	return true
}
