package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"postoffice/internal/store"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// openDrop opens mailbox's maildrop and closes it at the end of the test.
func openDrop(t testing.TB, m *Maildir, mailbox string) store.Maildrop {
	t.Helper()
	md, err := m.OpenMaildrop(mailbox)
	if err != nil {
		t.Fatalf("OpenMaildrop(%s): %v", mailbox, err)
	}
	t.Cleanup(func() { md.Close() })
	return md
}

// readMsg reads message i of md whole.
func readMsg(t testing.TB, md store.Maildrop, i int) string {
	t.Helper()
	rc, err := md.Open(i)
	if err != nil {
		t.Fatalf("Open(%d): %v", i, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read message %d: %v", i, err)
	}
	return string(b)
}

func ids(md store.Maildrop) []string {
	var out []string
	for _, mi := range md.Messages() {
		out = append(out, mi.ID)
	}
	return out
}

// putForeign writes a file as another tool would, with a given mtime.
func putForeign(t testing.TB, m *Maildir, mailbox, sub, name, content string, mtime time.Time) {
	t.Helper()
	dir := filepath.Join(m.Root(), mailbox, sub)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenMaildropEmpty(t *testing.T) {
	m := newTestMaildir(t, Options{})
	md := openDrop(t, m, "nobody")
	if n := len(md.Messages()); n != 0 {
		t.Fatalf("%d messages in a new mailbox", n)
	}
	for _, sub := range []string{subTmp, subNew, subCur} {
		if fi, err := os.Stat(filepath.Join(m.Root(), "nobody", sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", sub, err)
		}
	}
	if _, err := md.Open(0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open(0) on empty = %v, want store.ErrNotFound", err)
	}
}

func TestMaildropOurMessages(t *testing.T) {
	m := newTestMaildir(t, Options{})
	bodies := []string{sampleMsg, "Subject: 2\r\n\r\nsecond\r\n", "Subject: 3\r\n\r\n\r\n"}
	var want []string
	for _, b := range bodies {
		want = append(want, deliver(t, m, b, "u"))
	}
	md := openDrop(t, m, "u")
	if got := ids(md); !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v (oldest first)", got, want)
	}
	for i, mi := range md.Messages() {
		if mi.Size != int64(len(bodies[i])) {
			t.Errorf("message %d size %d, want %d", i, mi.Size, len(bodies[i]))
		}
		if got := readMsg(t, md, i); got != bodies[i] {
			t.Errorf("message %d = %q, want %q", i, got, bodies[i])
		}
	}
	for _, i := range []int{-1, 3} {
		if _, err := md.Open(i); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Open(%d) = %v, want store.ErrNotFound", i, err)
		}
	}
}

func TestMaildropLockInProcess(t *testing.T) {
	m := newTestMaildir(t, Options{})
	md, err := m.OpenMaildrop("u")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.OpenMaildrop("u"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second OpenMaildrop = %v, want store.ErrLocked", err)
	}
	// Another Maildir value on the same root (as a second server would be)
	// conflicts too.
	m2, err := New(m.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.OpenMaildrop("u"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("OpenMaildrop via a second Maildir = %v, want store.ErrLocked", err)
	}
	// Other mailboxes are independent.
	openDrop(t, m, "v")
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
	if err := md.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if _, err := md.Open(0); err == nil {
		t.Error("Open after Close succeeded")
	}
	if err := md.Commit(nil); err == nil {
		t.Error("Commit after Close succeeded")
	}
	openDrop(t, m, "u")
}

const helperEnv = "POSTOFFICE_STORE_HELPER"

// TestHelperProcess is not a test: run by TestMaildropLockAcrossProcesses
// as a second process, it opens the maildrop named in its environment,
// reports "locked" (or the error) on stdout, and holds the lock until its
// stdin closes.
func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	root, mailbox, _ := strings.Cut(spec, "|")
	m, err := New(root, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	md, err := m.OpenMaildrop(mailbox)
	if errors.Is(err, store.ErrLocked) {
		fmt.Println("busy")
		os.Exit(0)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	md.Close()
	os.Exit(0)
}

// startHelper runs TestHelperProcess on mailbox and returns its first line
// of output and a func that releases it and waits for it to exit.
func startHelper(t *testing.T, m *Maildir, mailbox string) (string, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+m.Root()+"|"+mailbox)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %v", err)
	}
	stop := func() {
		stdin.Close()
		io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper exit: %v", err)
		}
	}
	return strings.TrimSpace(line), stop
}

func TestMaildropLockAcrossProcesses(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "u")

	// The other process holds the lock: we get store.ErrLocked.
	line, stop := startHelper(t, m, "u")
	if line != "locked" {
		stop()
		t.Fatalf("helper said %q, want locked", line)
	}
	if _, err := m.OpenMaildrop("u"); !errors.Is(err, store.ErrLocked) {
		stop()
		t.Fatalf("OpenMaildrop while another process holds it = %v, want store.ErrLocked", err)
	}
	stop() // its Close (and exit) releases the lock
	md := openDrop(t, m, "u")

	// We hold the lock: the other process gets store.ErrLocked.
	line, stop = startHelper(t, m, "u")
	stop()
	if line != "busy" {
		t.Fatalf("helper said %q while we hold the lock, want busy", line)
	}
	md.Close()
	line, stop = startHelper(t, m, "u")
	stop()
	if line != "locked" {
		t.Fatalf("helper said %q after our Close, want locked", line)
	}
}

func TestSnapshotFixed(t *testing.T) {
	m := newTestMaildir(t, Options{})
	first := deliver(t, m, sampleMsg, "u")
	md, err := m.OpenMaildrop("u")
	if err != nil {
		t.Fatal(err)
	}
	second := deliver(t, m, "Subject: later\r\n\r\n", "u")
	if got := ids(md); !slices.Equal(got, []string{first}) {
		t.Fatalf("snapshot changed to %v", got)
	}
	md.Close()
	md = openDrop(t, m, "u")
	if got := ids(md); !slices.Equal(got, []string{first, second}) {
		t.Fatalf("next session sees %v, want both", got)
	}
}

func TestMaildropForeignFiles(t *testing.T) {
	m := newTestMaildir(t, Options{})
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	longLine := strings.Repeat("x", 1<<20)
	cases := []struct {
		sub, name, content, uid, want string
	}{
		{"new", "1700000001.M1P1.host", "Subject: lf\n\nbody\n", "1700000001.M1P1.host", "Subject: lf\r\n\r\nbody\r\n"},
		{"cur", "1700000002.M1P1.host:2,S", "Subject: seen\r\n\r\nx\r\n", "1700000002.M1P1.host", "Subject: seen\r\n\r\nx\r\n"},
		{"cur", "1700000003.M1P1.host,S=12:2,RS", "Subject: c\n\nno final newline", "1700000003.M1P1.host,S=12", "Subject: c\r\n\r\nno final newline\r\n"},
		{"new", "empty", "", "empty", "\r\n"},
		{"new", "longline", longLine, "longline", longLine + "\r\n"},
		{"new", "longline-lf", "S: x\n\n" + longLine + "\n", "longline-lf", "S: x\r\n\r\n" + longLine + "\r\n"},
	}
	for i, c := range cases {
		putForeign(t, m, "u", c.sub, c.name, c.content, base.Add(time.Duration(i)*time.Second))
	}
	md := openDrop(t, m, "u")
	msgs := md.Messages()
	if len(msgs) != len(cases) {
		t.Fatalf("%d messages, want %d", len(msgs), len(cases))
	}
	for i, c := range cases {
		if msgs[i].ID != c.uid {
			t.Errorf("message %d: UID %q, want %q (order by mtime)", i, msgs[i].ID, c.uid)
		}
		if msgs[i].Size != int64(len(c.want)) {
			t.Errorf("%s: Size %d, want %d", c.name, msgs[i].Size, len(c.want))
		}
		if got := readMsg(t, md, i); got != c.want {
			t.Errorf("%s: content differs (got %d octets, want %d)", c.name, len(got), len(c.want))
		}
	}
}

func TestMaildropOrderAndUIDsStable(t *testing.T) {
	m := newTestMaildir(t, Options{})
	old := time.Now().Add(-48 * time.Hour)
	putForeign(t, m, "u", "cur", "old-foreign:2,S", "a\n", old)
	ours1 := deliver(t, m, sampleMsg, "u")
	longName := strings.Repeat("n", 100)
	putForeign(t, m, "u", "new", longName, "b\n", time.Now().Add(time.Hour))
	putForeign(t, m, "u", "new", "bad\x01name", "c\n", time.Now().Add(2*time.Hour))
	ours2 := deliver(t, m, sampleMsg, "u")
	// A mail reader moved ours2 to cur/ and flagged it seen.
	os.Rename(filepath.Join(m.Root(), "u", "new", ours2+".eml"),
		filepath.Join(m.Root(), "u", "cur", ours2+".eml:2,S"))
	// Skipped: dotfiles, subdirectories.
	putForeign(t, m, "u", "new", ".hidden", "x\n", time.Time{})
	os.Mkdir(filepath.Join(m.Root(), "u", "cur", "subdir"), 0o700)

	md, err := m.OpenMaildrop("u")
	if err != nil {
		t.Fatal(err)
	}
	first := ids(md)
	md.Close()
	if len(first) != 5 {
		t.Fatalf("ids %q, want 5", first)
	}
	if first[0] != "old-foreign" || first[1] != ours1 || first[2] != ours2 {
		t.Errorf("order %q: want old-foreign, %s, %s first", first, ours1, ours2)
	}
	for _, id := range first[3:] {
		if len(id) != 40 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Errorf("UID %q of an unusable name: want 40 hex digits", id)
		}
	}
	for _, id := range first {
		if len(id) < 1 || len(id) > 70 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			t.Errorf("UID %q outside RFC 1939 §7 syntax", id)
		}
	}
	md = openDrop(t, m, "u")
	if second := ids(md); !slices.Equal(first, second) {
		t.Fatalf("UIDs changed across sessions: %q then %q", first, second)
	}
	if md.Messages()[2].Size != int64(len(sampleMsg)) || readMsg(t, md, 2) != sampleMsg {
		t.Errorf("moved message of ours: wrong size or content")
	}
}

func TestMaildropDuplicateListedOnce(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := deliver(t, m, sampleMsg, "u")
	// As if a reader's move from new/ to cur/ raced with our two readdirs.
	os.Link(filepath.Join(m.Root(), "u", "new", id+".eml"), filepath.Join(m.Root(), "u", "cur", id+".eml:2,"))
	md := openDrop(t, m, "u")
	if got := ids(md); !slices.Equal(got, []string{id}) {
		t.Fatalf("ids %v, want %s once", got, id)
	}
}

func TestMaildropOpenVanishedOrMoved(t *testing.T) {
	m := newTestMaildir(t, Options{})
	gone := deliver(t, m, sampleMsg, "u")
	moved := deliver(t, m, "Subject: moved\r\n\r\n", "u")
	md := openDrop(t, m, "u")
	os.Remove(filepath.Join(m.Root(), "u", "new", gone+".eml"))
	os.Rename(filepath.Join(m.Root(), "u", "new", moved+".eml"), filepath.Join(m.Root(), "u", "cur", moved+".eml:2,S"))
	if _, err := md.Open(0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open of a vanished message = %v, want store.ErrNotFound", err)
	}
	if got := readMsg(t, md, 1); got != "Subject: moved\r\n\r\n" {
		t.Errorf("moved message = %q", got)
	}
}

func TestMaildropOpenExactSize(t *testing.T) {
	m := newTestMaildir(t, Options{})
	putForeign(t, m, "u", "new", "grows", "a\n", time.Time{})
	md := openDrop(t, m, "u")
	// The file changes after the snapshot: Open still yields Size octets.
	os.WriteFile(filepath.Join(m.Root(), "u", "new", "grows"), []byte("a\nbbbbbb\n"), 0o600)
	if got := readMsg(t, md, 0); got != "a\r\n" {
		t.Errorf("grown file: got %q, want the snapshot's 3 octets", got)
	}
	os.WriteFile(filepath.Join(m.Root(), "u", "new", "grows"), nil, 0o600)
	rc, err := md.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("shrunk file: read error %v, want ErrUnexpectedEOF", err)
	}
}

func TestMaildropCommit(t *testing.T) {
	var (
		mu    sync.Mutex
		syncs []string
	)
	m := newTestMaildir(t, Options{FsyncHook: func(dir string) {
		mu.Lock()
		syncs = append(syncs, dir)
		mu.Unlock()
	}})
	var all []string
	for i := range 5 {
		all = append(all, deliver(t, m, fmt.Sprintf("Subject: %d\r\n\r\n", i), "u"))
	}
	putForeign(t, m, "u", "cur", "foreign:2,S", "x\n", time.Now().Add(time.Hour))
	md := openDrop(t, m, "u")
	// 1: removed by another tool; 3: moved to cur/ by a reader.
	os.Remove(filepath.Join(m.Root(), "u", "new", all[1]+".eml"))
	os.Rename(filepath.Join(m.Root(), "u", "new", all[3]+".eml"), filepath.Join(m.Root(), "u", "cur", all[3]+".eml:2,S"))

	if err := md.Commit([]int{0, 7}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Commit with an index out of range = %v, want store.ErrNotFound", err)
	}
	if len(names(t, filepath.Join(m.Root(), "u", "new"))) != 3 {
		t.Fatal("failed Commit removed something")
	}
	syncs = nil
	if err := md.Commit([]int{0, 1, 3, 5, 5}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if !slices.Contains(syncs, filepath.Join(m.Root(), "u", "new")) || !slices.Contains(syncs, filepath.Join(m.Root(), "u", "cur")) {
		t.Errorf("Commit fsynced %v, want new/ and cur/", syncs)
	}
	if got := names(t, filepath.Join(m.Root(), "u", "new")); !slices.Equal(got, []string{all[2] + ".eml", all[4] + ".eml"}) {
		t.Errorf("new/ holds %v", got)
	}
	if got := names(t, filepath.Join(m.Root(), "u", "cur")); len(got) != 0 {
		t.Errorf("cur/ holds %v", got)
	}
	if _, err := md.Open(0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open of a committed message = %v, want store.ErrNotFound", err)
	}
	if err := md.Commit([]int{0}); err != nil {
		t.Errorf("second Commit of the same message = %v, want nil", err)
	}
	md.Close()
	md = openDrop(t, m, "u")
	if got := ids(md); !slices.Equal(got, []string{all[2], all[4]}) {
		t.Fatalf("next session sees %v", got)
	}
}

func TestMaildropNoCommitOnClose(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "u")
	md, _ := m.OpenMaildrop("u")
	md.Close()
	md = openDrop(t, m, "u")
	if n := len(md.Messages()); n != 1 {
		t.Fatalf("%d messages after a session without Commit", n)
	}
	if !bytes.Equal([]byte(readMsg(t, md, 0)), []byte(sampleMsg)) {
		t.Fatal("content changed")
	}
}
