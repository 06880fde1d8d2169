package index_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 8 and RFC 1939 §8: the web inbox marks a message read (moving it
// from new/ to cur/ with ":2,S") while a POP3 session holds the maildrop.
// The session's snapshot must still RETR the message, byte for byte, and
// its DELE + QUIT must remove the moved file.
func TestMarkReadDuringPOP3SessionStillRetrievedAndCommitted(t *testing.T) {
	m, x := newIndex(t)
	raw := "Subject: moved under POP3\r\n\r\nbody\r\n"
	id := deliverTest(t, m, "u", raw)
	keep := deliverTest(t, m, "u", "Subject: kept\r\n\r\nx\r\n")

	md, err := m.OpenMaildrop("u")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	msgs := md.Messages()
	if len(msgs) != 2 || msgs[0].ID != id {
		t.Fatalf("snapshot %+v", msgs)
	}
	if _, err := x.SetSeen("u", id, true); err != nil {
		t.Fatal("mark read under the POP3 lock:", err)
	}
	dir := filepath.Join(m.Root(), "u")
	if _, err := os.Stat(filepath.Join(dir, "cur", id+".eml:2,S")); err != nil {
		t.Fatal(err)
	}
	rc, err := md.Open(0)
	if err != nil {
		t.Fatal("RETR after the move:", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(got)) != msgs[0].Size || string(got[len(got)-len(raw):]) != raw {
		t.Fatalf("RETR after the move: %d octets (listed %d), err %v", len(got), msgs[0].Size, err)
	}
	if err := md.Commit([]int{0}); err != nil {
		t.Fatal("commit after the move:", err)
	}
	md.Close()
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			if strings.SplitN(e.Name(), ":2,", 2)[0] == id+".eml" {
				t.Fatalf("DELE'd message still in %s/: %s", sub, e.Name())
			}
		}
	}
	md2, err := m.OpenMaildrop("u")
	if err != nil {
		t.Fatal(err)
	}
	defer md2.Close()
	if ms := md2.Messages(); len(ms) != 1 || ms[0].ID != keep {
		t.Fatalf("after QUIT: %+v", ms)
	}
}
