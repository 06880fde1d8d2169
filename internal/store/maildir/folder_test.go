package maildir

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"postoffice/internal/store"
)

func newFolderStore(t testing.TB) *Maildir {
	t.Helper()
	m, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func openF(t testing.TB, m *Maildir, name string) store.Folder {
	t.Helper()
	f, err := m.OpenFolder("user", name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func syncF(t testing.TB, f store.Folder) *store.FolderState {
	t.Helper()
	st, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func appendMsg(t testing.TB, f store.Folder, body string, flags ...string) uint32 {
	t.Helper()
	uid, err := f.Append(strings.NewReader(body), flags, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func readUID(t testing.TB, f store.Folder, uid uint32) string {
	t.Helper()
	rc, err := f.Open(uid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func uidsOf(st *store.FolderState) []uint32 {
	var out []uint32
	for _, m := range st.Messages {
		out = append(out, m.UID)
	}
	return out
}

func TestFolderAppendSyncReopen(t *testing.T) {
	m := newFolderStore(t)
	if err := m.CreateFolder("user", "Work"); err != nil {
		t.Fatal(err)
	}
	f := openF(t, m, "Work")
	u1 := appendMsg(t, f, "Subject: a\n\nbody\n")
	u2 := appendMsg(t, f, "Subject: b\r\n\r\nbody\r\n", store.FlagSeen, "$Label1")
	if u1 != 1 || u2 != 2 {
		t.Fatalf("uids %d %d", u1, u2)
	}
	st := syncF(t, f)
	if len(st.Messages) != 2 || st.UIDNext != 3 || st.UIDValidity == 0 {
		t.Fatalf("state %+v", st)
	}
	if got := readUID(t, f, u1); got != "Subject: a\r\n\r\nbody\r\n" || int64(len(got)) != st.Messages[0].Size {
		t.Fatalf("content %q size %d", got, st.Messages[0].Size)
	}
	if !slices.Equal(st.Messages[1].Flags, []string{store.FlagSeen, "$Label1"}) {
		t.Fatalf("flags %v", st.Messages[1].Flags)
	}
	f.Close()
	// A new process: a fresh Maildir on the same root.
	m2, err := New(m.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	f2 := openF(t, m2, "Work")
	st2 := syncF(t, f2)
	if st2.UIDValidity != st.UIDValidity || !slices.Equal(uidsOf(st2), []uint32{1, 2}) || st2.HighestModSeq != st.HighestModSeq {
		t.Fatalf("after restart %+v, before %+v", st2, st)
	}
	for i := range st.Messages {
		a, b := st.Messages[i], st2.Messages[i]
		if a.ID != b.ID || a.ModSeq != b.ModSeq || !a.Received.Equal(b.Received) || a.Size != b.Size {
			t.Fatalf("message %d: %+v then %+v", i, a, b)
		}
	}
}
