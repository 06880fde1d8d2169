package shared_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/maildir"
	"postoffice/internal/store/migrate"
	"postoffice/internal/store/pg"
	"postoffice/internal/store/s3blob"
	"postoffice/internal/store/shared"
	"postoffice/internal/testsupport/engines"
)

func migCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	return c
}

// openShared opens a shared store on fresh engines.
func openShared(t *testing.T) *shared.Store { return openSharedObserved(t, nil) }

func openSharedObserved(t *testing.T, observe func(engine, op string, took time.Duration, err error)) *shared.Store {
	t.Helper()
	dsn := engines.Postgres(t)
	ep, ak, sk, b := engines.S3(t)
	p, err := pg.Connect(migCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if _, err := pg.Migrate(migCtx(t), p); err != nil {
		t.Fatal(err)
	}
	c, err := s3blob.New(s3blob.Config{Endpoint: ep, Access: ak, Secret: sk, Bucket: b, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := shared.Open(migCtx(t), shared.Options{Pool: p, Blobs: c, DSN: dsn, Timeout: 10 * time.Second, SweepInterval: -1, Node: "migrate-test", Observe: observe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newMaildir(t *testing.T, root string) *maildir.Maildir {
	t.Helper()
	m, err := maildir.New(root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// buildSource fills mailbox "alice" of a Maildir through its own API, plus
// foreign files, and returns its root.
func buildSource(t *testing.T) (string, *maildir.Maildir) {
	root := t.TempDir()
	m := newMaildir(t, root)
	ctx := migCtx(t)
	for i := 0; i < 6; i++ {
		body := "From: a@example.org\r\nSubject: message " + strings.Repeat("x", i) + "\r\n\r\nbody " + strings.Repeat("line\r\n", i+1)
		if err := m.Deliver(ctx, m.NewID(), []string{"alice"}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"Projects", "Projects/2026", "Grüße/Ünïcode"} {
		if err := m.CreateFolder("alice", f); err != nil && err != store.ErrFolderExists {
			t.Fatal(f, err)
		}
	}
	if err := m.SetSubscribed("alice", "Projects/2026", true); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubscribed("alice", "Grüße/Ünïcode", true); err != nil {
		t.Fatal(err)
	}
	f, err := m.OpenFolder("alice", store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	uids := func(i ...int) []uint32 {
		var u []uint32
		for _, k := range i {
			u = append(u, st.Messages[k].UID)
		}
		return u
	}
	if _, err := f.SetFlags(uids(0, 1), store.FlagsAdd, []string{store.FlagSeen, "$Label1", "project-x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.SetFlags(uids(2), store.FlagsAdd, []string{store.FlagFlagged, store.FlagAnswered}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Copy(uids(3), "Grüße/Ünïcode"); err != nil {
		t.Fatal(err)
	}
	// The last one is expunged: UIDNEXT > max UID + 1.
	if _, err := f.SetFlags(uids(5), store.FlagsAdd, []string{store.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Expunge(uids(5)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dir := filepath.Join(root, "alice")
	// Foreign files: LF line ends, and no final newline, in new/ and cur/.
	write := func(p, data string) {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("new/1700000000.M1P2.host", "From: b@example.org\nSubject: foreign LF\n\nline one\nline two\n")
	write("cur/1700000001.M2P3.host:2,S", "From: c@example.org\nSubject: no final newline\n\nlast line without newline")
	write("new/1700000002.M3P4.host", "Subject: bare\r\n\r\nno newline at all")
	return root, m
}

// folderFiles returns uid -> (base name, info, content) of a folder
// directory, through its dovecot-uidlist.
func folderFiles(t *testing.T, dir string) map[string][3]string {
	byBase := map[string][2]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			base, info, _ := strings.Cut(e.Name(), ":2,")
			byBase[base] = [2]string{info, string(data)}
		}
	}
	out := map[string][3]string{}
	lines := strings.Split(readFile(t, filepath.Join(dir, "dovecot-uidlist")), "\n")
	for _, l := range lines[1:] {
		uid, base, ok := strings.Cut(l, " :")
		if !ok {
			continue
		}
		v, ok := byBase[base]
		if !ok {
			t.Fatalf("%s: uidlist names %s, no such file", dir, base)
		}
		out[uid] = [3]string{base, v[0], v[1]}
		delete(byBase, base)
	}
	if len(byBase) > 0 {
		t.Fatalf("%s: files without a UID: %v", dir, byBase)
	}
	return out
}

func readFile(t *testing.T, p string) string {
	data, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

// uidlistView is a dovecot-uidlist without its GUID.
func uidlistView(t *testing.T, p string) string {
	lines := strings.Split(readFile(t, p), "\n")
	if len(lines) == 0 {
		return ""
	}
	var hdr []string
	for _, f := range strings.Fields(lines[0]) {
		if !strings.HasPrefix(f, "G") {
			hdr = append(hdr, f)
		}
	}
	lines[0] = strings.Join(hdr, " ")
	return strings.Join(lines, "\n")
}

type pop3Item struct {
	ID   string
	Size int64
}

func pop3View(t *testing.T, m *maildir.Maildir, mb string) []pop3Item {
	d, err := m.OpenMaildrop(mb)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out []pop3Item
	for _, mi := range d.Messages() {
		out = append(out, pop3Item{mi.ID, mi.Size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// folderDirs lists the folder directories of a mailbox ("" for INBOX).
var folderDirs = []string{"", ".Projects", ".Projects.2026", ".Gr&APw-&AN8-e.&ANw-n&AO8-code"}

func TestMigrateRoundTrip(t *testing.T) {
	root, src := buildSource(t)
	s := openShared(t)
	ctx := migCtx(t)
	var moved int
	if err := migrate.ToShared(ctx, src, s, nil, false, func(r migrate.Result) { moved += r.Moved }); err != nil {
		t.Fatal(err)
	}
	if moved != 5+3+1 {
		t.Fatalf("moved %d messages, want 9", moved)
	}
	// The rows against the source.
	folders, subs, err := s.ExportFolders(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]shared.MigrationFolder{}
	for _, f := range folders {
		byName[f.Name] = f
	}
	for _, name := range []string{store.Inbox, "Projects", "Projects/2026", "Grüße/Ünïcode", "Sent", "Trash"} {
		ex, err := src.ExportFolder("alice", name)
		if err != nil {
			t.Fatal(name, err)
		}
		got, ok := byName[name]
		if !ok {
			t.Fatalf("folder %q not migrated", name)
		}
		if got.UIDValidity != ex.State.UIDValidity || got.UIDNext != ex.State.UIDNext {
			t.Errorf("%s: UIDVALIDITY/UIDNEXT %d/%d, source %d/%d", name, got.UIDValidity, got.UIDNext, ex.State.UIDValidity, ex.State.UIDNext)
		}
		if len(got.Messages) != len(ex.State.Messages) {
			t.Fatalf("%s: %d messages, source %d", name, len(got.Messages), len(ex.State.Messages))
		}
		for i, sm := range ex.State.Messages {
			gm := got.Messages[i]
			flags := append(append([]string{}, gm.Flags...), gm.Keywords...)
			if (gm.ID != sm.ID && name == store.Inbox) || gm.UID != sm.UID || !slices.Equal(flags, sm.Flags) || !gm.Received.Equal(sm.Received.Truncate(time.Microsecond)) || gm.Size != sm.Size {
				t.Errorf("%s: row %+v, source %+v", name, gm, sm)
			}
		}
	}
	// The expunged UID stays unused.
	if in := byName[store.Inbox]; slices.ContainsFunc(in.Messages, func(m shared.MigrationMessage) bool { return m.UID == 6 }) || in.UIDNext != 10 {
		t.Errorf("INBOX: UID 6 reused or UIDNEXT %d", in.UIDNext)
	}
	if !slices.Contains(subs, "Projects/2026") || !slices.Contains(subs, "Grüße/Ünïcode") {
		t.Errorf("subscriptions %q", subs)
	}

	// The shared store serves every message as the Maildir does (a
	// foreign file's bytes normalized to the wire form).
	for _, name := range []string{store.Inbox, "Grüße/Ünïcode"} {
		sf, err := s.OpenFolder("alice", name)
		if err != nil {
			t.Fatal(err)
		}
		mf, err := src.OpenFolder("alice", name)
		if err != nil {
			t.Fatal(err)
		}
		sst, err := sf.Sync()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range sst.Messages {
			a, b := readUID(t, sf, m.UID), readUID(t, mf, m.UID)
			if a != b || int64(len(a)) != m.Size {
				t.Errorf("%s uid %d: shared store gives %q (size %d), Maildir %q", name, m.UID, a, m.Size, b)
			}
		}
		sf.Close()
		mf.Close()
	}

	// Again: nothing moves.
	moved = 0
	if err := migrate.ToShared(ctx, src, s, nil, false, func(r migrate.Result) { moved += r.Moved }); err != nil {
		t.Fatal(err)
	}
	if moved != 0 {
		t.Fatalf("second run moved %d", moved)
	}
	again, _, err := s.ExportFolders(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(folders) {
		t.Fatalf("second run changed the folders")
	}
	for i := range again {
		if again[i].UIDNext != folders[i].UIDNext || again[i].UIDValidity != folders[i].UIDValidity || len(again[i].Messages) != len(folders[i].Messages) {
			t.Errorf("second run changed %s", again[i].Name)
		}
	}

	// Back into an empty directory.
	root2 := t.TempDir()
	back := newMaildir(t, root2)
	if err := migrate.ToMaildir(ctx, s, back, []string{"alice"}, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range folderDirs {
		a, b := filepath.Join(root, "alice", d), filepath.Join(root2, "alice", d)
		fa, fb := folderFiles(t, a), folderFiles(t, b)
		if len(fa) == 0 && d == "" {
			t.Fatal("no source files")
		}
		for base, av := range fa {
			bv, ok := fb[base]
			if !ok {
				t.Errorf("%s: %s missing after the round trip", d, base)
				continue
			}
			if av[2] != bv[2] {
				t.Errorf("%s: uid %s: bytes differ: %q vs %q", d, base, av[2], bv[2])
			}
			if av[1] != bv[1] {
				t.Errorf("%s: uid %s: info %q vs %q", d, base, av[1], bv[1])
			}
			// The ids are kept, but for a copy whose id INBOX has.
			if av[0] != bv[0] && d == "" {
				t.Errorf("%s: uid %s: file %s vs %s", d, base, av[0], bv[0])
			}
		}
		if len(fb) != len(fa) {
			t.Errorf("%s: %d files, source %d", d, len(fb), len(fa))
		}
		if ua, ub := uidlistView(t, filepath.Join(a, "dovecot-uidlist")), uidlistView(t, filepath.Join(b, "dovecot-uidlist")); ua != ub && d == "" {
			t.Errorf("%s: dovecot-uidlist\n%s\nvs\n%s", d, ua, ub)
		}
		if ka, kb := readFile(t, filepath.Join(a, "dovecot-keywords")), readFile(t, filepath.Join(b, "dovecot-keywords")); ka != kb {
			t.Errorf("%s: dovecot-keywords %q vs %q", d, ka, kb)
		}
	}
	if pa, pb := pop3View(t, src, "alice"), pop3View(t, back, "alice"); !slices.Equal(pa, pb) {
		t.Errorf("POP3 view %v vs %v", pa, pb)
	}
	sa, _ := src.Subscriptions("alice")
	sb, _ := back.Subscriptions("alice")
	slices.Sort(sa)
	slices.Sort(sb)
	if !slices.Equal(sa, sb) {
		t.Errorf("subscriptions %q vs %q", sa, sb)
	}
	// Received times are the files' mtimes.
	ea, _ := src.ExportFolder("alice", store.Inbox)
	eb, _ := back.ExportFolder("alice", store.Inbox)
	for i := range ea.State.Messages {
		// PostgreSQL keeps microseconds.
		if !ea.State.Messages[i].Received.Truncate(time.Microsecond).Equal(eb.State.Messages[i].Received) {
			t.Errorf("received %v vs %v", ea.State.Messages[i].Received, eb.State.Messages[i].Received)
		}
	}
	// Twice into the Maildir: nothing more written.
	var wrote int
	if err := migrate.ToMaildir(ctx, s, back, []string{"alice"}, false, func(r migrate.Result) { wrote += r.Moved }); err != nil {
		t.Fatal(err)
	}
	if wrote != 0 {
		t.Errorf("second run to the Maildir wrote %d", wrote)
	}
}

func TestMigrateCutOff(t *testing.T) {
	_, src := buildSource(t)
	ctx, cancel := context.WithCancel(migCtx(t))
	// The run is cut off after the third object stored, halfway through
	// INBOX.
	var mu sync.Mutex
	puts := 0
	s := openSharedObserved(t, func(engine, op string, _ time.Duration, _ error) {
		mu.Lock()
		defer mu.Unlock()
		if engine == "s3" && op == "put" {
			if puts++; puts == 3 {
				cancel()
			}
		}
	})
	err := migrate.ToShared(ctx, src, s, nil, false, nil)
	if err == nil {
		t.Fatal("a cancelled run reported no error")
	}
	part, _, err := s.ExportFolders(migCtx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range part {
		total += len(f.Messages)
	}
	if total == 0 || total >= 5 {
		t.Fatalf("the cut-off run moved everything (%d)", total)
	}
	var moved int
	if err := migrate.ToShared(migCtx(t), src, s, nil, false, func(r migrate.Result) { moved += r.Moved }); err != nil {
		t.Fatal(err)
	}
	if moved+total != 9 {
		t.Fatalf("moved %d after %d, want 9 in all", moved, total)
	}
	full, _, err := s.ExportFolders(migCtx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	total = 0
	for _, f := range full {
		total += len(f.Messages)
	}
	if total != 9 {
		t.Fatalf("%d messages after the full run", total)
	}
}

func readUID(t *testing.T, f store.Folder, uid uint32) string {
	t.Helper()
	rc, err := f.Open(uid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
