package maildir

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postoffice/internal/store"
)

// TestExportImportFolder copies a folder from one Maildir into another
// through ExportFolder and ImportFolder: the files' bytes (a foreign LF
// file included), flag letters, dovecot-uidlist records and
// dovecot-keywords are the source's; a second import writes nothing.
func TestExportImportFolder(t *testing.T) {
	src := newFolderStore(t)
	ctx := context.Background()
	for _, b := range []string{"Subject: a\r\n\r\nA\r\n", "Subject: b\r\n\r\nB\r\n"} {
		if err := src.Deliver(ctx, src.NewID(), []string{"u"}, strings.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(src.Root(), "u")
	if err := os.WriteFile(filepath.Join(dir, "new", "17.M1.host"), []byte("Subject: lf\n\nno final newline"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := src.OpenFolder("u", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Sync()
	if _, err := f.SetFlags([]uint32{st.Messages[0].UID}, store.FlagsAdd, []string{store.FlagSeen, "work"}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ex, err := src.ExportFolder("u", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.State.Messages) != 3 || len(ex.Files) != 3 {
		t.Fatalf("exported %d messages, %d files", len(ex.State.Messages), len(ex.Files))
	}
	var msgs []ImportMessage
	for _, m := range ex.State.Messages {
		info, err := FileInfoLetters(m.Flags, ex.Keywords)
		if err != nil {
			t.Fatal(err)
		}
		file := ex.Files[m.ID]
		if info != file.Info {
			t.Errorf("%s: letters %q, file has %q", m.ID, info, file.Info)
		}
		msgs = append(msgs, ImportMessage{ID: m.ID, UID: m.UID, Info: info, Received: m.Received,
			Open: func(context.Context) (io.ReadCloser, error) { return os.Open(file.Path) }})
	}
	dst := newFolderStore(t)
	n, err := dst.ImportFolder(ctx, "u", "INBOX", ex.State.UIDValidity, ex.State.UIDNext, ex.Keywords, msgs)
	if err != nil || n != 3 {
		t.Fatalf("import: %d, %v", n, err)
	}
	if n, err := dst.ImportFolder(ctx, "u", "INBOX", ex.State.UIDValidity, ex.State.UIDNext, ex.Keywords, msgs); err != nil || n != 0 {
		t.Fatalf("second import: %d, %v", n, err)
	}
	back, err := dst.ExportFolder("u", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range ex.Files {
		b, ok := back.Files[id]
		if !ok {
			t.Fatalf("%s missing", id)
		}
		da, _ := os.ReadFile(a.Path)
		db, _ := os.ReadFile(b.Path)
		if string(da) != string(db) || a.Info != b.Info || a.Base != b.Base {
			t.Errorf("%s: %q %q vs %q %q", id, a.Info, da, b.Info, db)
		}
	}
	la, _ := readUIDListFile(dir)
	lb, _ := readUIDListFile(filepath.Join(dst.Root(), "u"))
	if la.validity != lb.validity || la.next != lb.next || len(la.recs) != len(lb.recs) {
		t.Fatalf("uidlist %+v vs %+v", la, lb)
	}
	for i := range la.recs {
		if la.recs[i].uid != lb.recs[i].uid || la.recs[i].base != lb.recs[i].base {
			t.Errorf("uidlist record %+v vs %+v", la.recs[i], lb.recs[i])
		}
	}
	ka, _ := os.ReadFile(filepath.Join(dir, keywordsName))
	kb, _ := os.ReadFile(filepath.Join(dst.Root(), "u", keywordsName))
	if string(ka) != string(kb) || len(ka) == 0 {
		t.Errorf("keywords %q vs %q", ka, kb)
	}
	if _, err := FileInfoLetters([]string{"unknown"}, ex.Keywords); err == nil {
		t.Error("a keyword without a letter was given one")
	}
}
