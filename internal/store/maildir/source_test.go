package maildir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
)

// The index names messages by the locations Scan gave it; a location that
// is not "new/<name>" or "cur/<name>" of a message file must reach
// nothing, whatever the index (or a bug in it) hands back: not the lock
// file, not tmp/, not another mailbox, not outside the root.
func TestSourceRefusesLocationsOutsideTheMailbox(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := deliver(t, m, message2KB, "u")
	deliver(t, m, message2KB, "other")
	secret := filepath.Join(filepath.Dir(m.Root()), "secret.eml")
	if err := os.WriteFile(secret, []byte("Subject: secret\r\n\r\nx\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	scanned, err := m.Scan("u")
	if err != nil || len(scanned) != 1 || scanned[0].Loc != "new/"+id+msgExt || scanned[0].Key != id+msgExt {
		t.Fatalf("scan: %+v %v", scanned, err)
	}
	for _, loc := range []string{
		"new/../../secret.eml", "new/../../other/new/" + id + msgExt, "../secret.eml",
		"tmp/x.eml", ".postoffice.lock", "new/.hidden", "new/", "cur", "new/a/b", "",
	} {
		if ok, err := m.Exists("u", loc); ok || err != nil {
			t.Errorf("Exists(%q) = %v, %v", loc, ok, err)
		}
		if _, err := m.Open("u", loc, 10); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Open(%q): %v, want ErrNotFound", loc, err)
		}
		if _, ok, err := m.Describe("u", loc, new([]byte)); ok || err != nil {
			t.Errorf("Describe(%q) = %v, %v", loc, ok, err)
		}
		if _, err := m.SetSeen("u", "x", loc, true); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetSeen(%q): %v, want ErrNotFound", loc, err)
		}
		if gone, err := m.Remove("u", []index.Located{{ID: "x", Loc: loc}}); len(gone) != 0 || err != nil {
			t.Errorf("Remove(%q) = %v, %v", loc, gone, err)
		}
	}
	// Nor a mailbox name that is not one (the index checks names too).
	// A folder box ("u/Folder") names a Maildir++ folder below u, never a
	// path.
	for _, bad := range []string{"..", "../u", "u/../../x", "u/", "u/INBOX", "u/a/../../..", ".tmp", ""} {
		if _, err := m.Scan(bad); !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("Scan(%q): %v, want ErrBadMailbox", bad, err)
		}
		if _, _, err := m.Stamp(bad); !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("Stamp(%q): %v, want ErrBadMailbox", bad, err)
		}
		if _, err := m.Open(bad, "new/"+id+msgExt, 10); !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("Open(%q): %v, want ErrBadMailbox", bad, err)
		}
		if _, err := m.Remove(bad, []index.Located{{ID: id, Loc: "new/" + id + msgExt}}); !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("Remove(%q): %v, want ErrBadMailbox", bad, err)
		}
		if _, err := m.SetSeen(bad, id, "new/"+id+msgExt, true); !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("SetSeen(%q): %v, want ErrBadMailbox", bad, err)
		}
	}
	if _, err := os.Stat(secret); err != nil {
		t.Fatal("the file outside the root is gone:", err)
	}
	if md, err := m.OpenMaildrop("other"); err != nil || len(md.Messages()) != 1 {
		t.Fatalf("the other mailbox changed: %v", err)
	} else {
		md.Close()
	}
}

// SetSeen moves a message between locations and Stamp notices each
// change of the directories; a removed message's location stops
// existing.
func TestSourceFlagsAndRemove(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := deliver(t, m, message2KB, "u")
	// Directories last changed an hour ago: their stamp is settled.
	old := time.Now().Add(-time.Hour)
	for _, sub := range []string{"new", "cur"} {
		if err := os.Chtimes(filepath.Join(m.Root(), "u", sub), old, old); err != nil {
			t.Fatal(err)
		}
	}
	before, settled, err := m.Stamp("u")
	if err != nil || !settled {
		t.Fatalf("stamp of old directories: %q settled %v, %v", before, settled, err)
	}
	loc, err := m.SetSeen("u", id, "new/"+id+msgExt, true)
	if err != nil || loc != "cur/"+id+msgExt+":2,S" {
		t.Fatalf("mark read: %q %v", loc, err)
	}
	if again, err := m.SetSeen("u", id, loc, true); err != nil || again != loc {
		t.Fatalf("mark read twice: %q %v", again, err)
	}
	unread, err := m.SetSeen("u", id, loc, false)
	if err != nil || unread != "cur/"+id+msgExt+":2," {
		t.Fatalf("mark unread: %q %v", unread, err)
	}
	after, settled, err := m.Stamp("u")
	if err != nil || after == before || settled {
		t.Fatalf("stamp after the move: %q (before %q), settled %v, %v; want changed, not settled", after, before, settled, err)
	}
	d, ok, err := m.Describe("u", unread, new([]byte))
	if err != nil || !ok || d.ID != id || d.Size != int64(len(message2KB)) || d.Order != store.IDTime(id) {
		t.Fatalf("describe: %+v %v %v", d, ok, err)
	}
	rc, err := m.Open("u", unread, d.Size)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != message2KB {
		t.Fatalf("open: %d octets, %v", len(b), err)
	}
	md, err := m.OpenMaildrop("u")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Remove("u", []index.Located{{ID: id, Loc: unread}}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("remove under the POP3 lock: %v", err)
	}
	md.Close()
	gone, err := m.Remove("u", []index.Located{{ID: id, Loc: unread}})
	if err != nil || len(gone) != 1 || gone[0] != id {
		t.Fatalf("remove: %v %v", gone, err)
	}
	if ok, err := m.Exists("u", unread); ok || err != nil {
		t.Fatalf("exists after remove: %v %v", ok, err)
	}
	l, err := m.List("u")
	if err != nil || len(l) != 0 {
		t.Fatalf("list after remove: %+v %v", l, err)
	}
}

// Admin.List's Open reads a message as POP3 would, and says ErrNotFound
// once it is gone.
func TestListOpen(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := deliver(t, m, message2KB, "u")
	l, err := m.List("u")
	if err != nil || len(l) != 1 || l[0].ID != id {
		t.Fatalf("list: %+v %v", l, err)
	}
	rc, err := l[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(b)) != l[0].Size || string(b) != message2KB {
		t.Fatalf("read %d octets of %d: %v", len(b), l[0].Size, err)
	}
	if err := os.Remove(filepath.Join(m.Root(), "u", "new", id+msgExt)); err != nil {
		t.Fatal(err)
	}
	if _, err := l[0].Open(); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("open after removal: %v, want ErrNotFound", err)
	}
}

// HasMailbox follows a link to a mailbox directory, as "postoffice mailbox
// show" always did, while Mailboxes lists directories only.
func TestHasMailbox(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, message2KB, "u")
	elsewhere := filepath.Join(t.TempDir(), "linked")
	if err := os.MkdirAll(filepath.Join(elsewhere, "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(m.Root(), "linked")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(m.Root(), "file"), nil, 0o600)
	for name, want := range map[string]bool{"u": true, "linked": true, "file": false, "nobody": false} {
		if ok, err := m.HasMailbox(name); ok != want || err != nil {
			t.Errorf("HasMailbox(%q) = %v, %v; want %v", name, ok, err, want)
		}
	}
	if _, err := m.HasMailbox("../u"); !errors.Is(err, store.ErrBadMailbox) {
		t.Errorf("HasMailbox(../u): %v", err)
	}
}
