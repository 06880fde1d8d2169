package maildir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// newTestMaildir returns a Maildir in a fresh temporary directory.
func newTestMaildir(t testing.TB, opts Options) *Maildir {
	t.Helper()
	m, err := New(filepath.Join(t.TempDir(), "mail"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// stagedFileNames returns the paths, relative to the staging directory, of
// the regular files in it and in its instance directories.
func stagedFileNames(t testing.TB, m *Maildir) []string {
	t.Helper()
	base := filepath.Join(m.Root(), stageDirName)
	var out []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(base, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stagedData returns the staging files that hold data and have no other
// name: the tmp file of a delivery in progress or failed (the pool's files
// are empty; a delivered file waiting for its staging name to be removed
// is also linked in new/).
func stagedData(t testing.TB, m *Maildir) []string {
	t.Helper()
	var out []string
	for _, n := range stagedFileNames(t, m) {
		fi, err := os.Stat(filepath.Join(m.Root(), stageDirName, n))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err == nil && fi.Size() > 0 && fi.Sys().(*syscall.Stat_t).Nlink == 1 {
			out = append(out, n)
		}
	}
	return out
}

// deliver stores body in mailboxes and returns its id.
func deliver(t testing.TB, m *Maildir, body string, mailboxes ...string) string {
	t.Helper()
	id := m.NewID()
	if err := m.Deliver(context.Background(), id, mailboxes, strings.NewReader(body)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return id
}

// names lists the entries of dir (none if it does not exist).
func names(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// assertEmptyMailbox checks that tmp/, new/ and cur/ of mailbox hold
// nothing and that no message data is left in the staging directory.
func assertEmptyMailbox(t *testing.T, m *Maildir, mailbox string) {
	t.Helper()
	if n := stagedData(t, m); len(n) != 0 {
		t.Errorf("staging directory holds data in %v, want none", n)
	}
	for _, sub := range []string{subTmp, subNew, subCur} {
		if n := names(t, filepath.Join(m.Root(), mailbox, sub)); len(n) != 0 {
			t.Errorf("%s/%s holds %v, want nothing", mailbox, sub, n)
		}
	}
}

const sampleMsg = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"

func TestNewMaildirCreatesRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	if _, err := New(root, Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root)
	if err != nil || !fi.IsDir() {
		t.Fatalf("root not created: %v", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("root permissions %v, want no group/other access", fi.Mode().Perm())
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(file, Options{}); err == nil {
		t.Error("NewMaildir on a regular file succeeded")
	}
	if _, err := New("", Options{}); err == nil {
		t.Error("New(\"\") succeeded")
	}
}

func TestDeliverOneMailbox(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := deliver(t, m, sampleMsg, "alice")
	got, err := os.ReadFile(filepath.Join(m.Root(), "alice", "new", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != sampleMsg {
		t.Fatalf("stored %q, want %q", got, sampleMsg)
	}
	if n := names(t, filepath.Join(m.Root(), "alice", "tmp")); len(n) != 0 {
		t.Errorf("tmp holds %v after delivery", n)
	}
	if n := names(t, filepath.Join(m.Root(), "alice", "cur")); len(n) != 0 {
		t.Errorf("cur holds %v after delivery", n)
	}
	fi, _ := os.Stat(filepath.Join(m.Root(), "alice", "new", id+".eml"))
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("message permissions %v, want no group/other access", fi.Mode().Perm())
	}
}

// TestDeliverStoresCRLF: whatever the engine hands over, the stored file
// is CRLF text ending in CRLF, so its size is its POP3 size.
func TestDeliverStoresCRLF(t *testing.T) {
	m := newTestMaildir(t, Options{})
	for in, want := range map[string]string{
		"Subject: lf\n\nbody\n":    "Subject: lf\r\n\r\nbody\r\n",
		"Subject: x\r\n\r\nno end": "Subject: x\r\n\r\nno end\r\n",
		sampleMsg:                  sampleMsg,
	} {
		id := deliver(t, m, in, "u")
		got, err := os.ReadFile(filepath.Join(m.Root(), "u", "new", id+".eml"))
		if err != nil || string(got) != want {
			t.Errorf("Deliver(%q) stored %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestDeliverSeveralMailboxes(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := deliver(t, m, sampleMsg, "a", "b", "a", "c", "b")
	var first os.FileInfo
	for _, mb := range []string{"a", "b", "c"} {
		n := names(t, filepath.Join(m.Root(), mb, "new"))
		if !slices.Equal(n, []string{id + ".eml"}) {
			t.Fatalf("%s/new holds %v, want exactly one copy %s.eml", mb, n, id)
		}
		p := filepath.Join(m.Root(), mb, "new", id+".eml")
		got, err := os.ReadFile(p)
		if err != nil || string(got) != sampleMsg {
			t.Fatalf("%s: read %q, %v", mb, got, err)
		}
		fi, _ := os.Stat(p)
		if first == nil {
			first = fi
		} else if !os.SameFile(first, fi) {
			t.Errorf("%s: copy is not a hard link of the others", mb)
		}
		if n := names(t, filepath.Join(m.Root(), mb, "tmp")); len(n) != 0 {
			t.Errorf("%s/tmp holds %v", mb, n)
		}
	}
}

// patternReader yields size octets of CRLF lines, then err (io.EOF when
// nil). It never holds more than one read's worth.
type patternReader struct {
	off, size int64
	err       error
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		if p.err != nil {
			return 0, p.err
		}
		return 0, io.EOF
	}
	if int64(len(b)) > p.size-p.off {
		b = b[:p.size-p.off]
	}
	for i := range b {
		switch (p.off + int64(i)) % 64 {
		case 62:
			b[i] = '\r'
		case 63:
			b[i] = '\n'
		default:
			b[i] = 'a' + byte((p.off+int64(i))%26)
		}
	}
	p.off += int64(len(b))
	return len(b), nil
}

func TestDeliverLargeStreamed(t *testing.T) {
	m := newTestMaildir(t, Options{})
	const size = 20 << 20
	want := sha256.New()
	io.Copy(want, &patternReader{size: size})
	id := m.NewID()
	deliver(t, m, "warm-up\r\n", "big") // pools, directories
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := m.Deliver(context.Background(), id, []string{"big"}, &patternReader{size: size}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	// Streaming: the allocations are a small fraction of the message.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/8 {
		t.Errorf("Deliver of %d octets allocated %d octets", size, alloc)
	}
	f, err := os.Open(filepath.Join(m.Root(), "big", "new", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := sha256.New()
	n, _ := io.Copy(got, f)
	if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("stored %d octets, content mismatch: %v", n, !bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
}

func TestDeliverReaderErrorLeavesNothing(t *testing.T) {
	m := newTestMaildir(t, Options{})
	boom := errors.New("client went away")
	id := m.NewID()
	// A 20 MB message whose source fails half-way, after 10 MB.
	err := m.Deliver(context.Background(), id, []string{"x", "y"}, &patternReader{size: 10 << 20, err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("Deliver = %v, want an error wrapping %v", err, boom)
	}
	if !strings.Contains(err.Error(), "deliver "+id) {
		t.Errorf("error %q does not name the delivery", err)
	}
	assertEmptyMailbox(t, m, "x")
	assertEmptyMailbox(t, m, "y")
}

func TestDeliverCanceled(t *testing.T) {
	m := newTestMaildir(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- m.Deliver(ctx, m.NewID(), []string{"x"}, pr) }()
	pw.Write([]byte("partial\r\n"))
	cancel()
	// Whether Deliver is blocked in a read or about to read, it must notice
	// the cancellation (at the next read, or before linking at EOF).
	pw.Close()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver = %v, want context.Canceled", err)
	}
	assertEmptyMailbox(t, m, "x")
}

func TestDeliverLinkFailureRollsBack(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := m.NewID()
	deliver(t, m, "x\r\n", "a", "b") // create the mailboxes
	// A name already taken in b/new makes the second link fail.
	if err := os.WriteFile(filepath.Join(m.Root(), "b", "new", id+".eml"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := m.Deliver(context.Background(), id, []string{"a", "b"}, strings.NewReader(sampleMsg))
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Deliver = %v, want ErrExist", err)
	}
	if slices.Contains(names(t, filepath.Join(m.Root(), "a", "new")), id+".eml") {
		t.Error("link in a/new not removed after failure")
	}
	if n := names(t, filepath.Join(m.Root(), "a", "tmp")); len(n) != 0 {
		t.Errorf("a/tmp holds %v", n)
	}
	if got, _ := os.ReadFile(filepath.Join(m.Root(), "b", "new", id+".eml")); string(got) != "old" {
		t.Errorf("existing file replaced: %q", got)
	}
}

func TestValidMailboxName(t *testing.T) {
	for _, name := range []string{"a", "user", "john.doe", "a-b_c", "0", strings.Repeat("x", 64), "a.b.c"} {
		if !store.ValidMailboxName(name) {
			t.Errorf("store.ValidMailboxName(%q) = false", name)
		}
	}
	for _, name := range badMailboxNames {
		if store.ValidMailboxName(name) {
			t.Errorf("store.ValidMailboxName(%q) = true", name)
		}
	}
}

var badMailboxNames = []string{
	"", "../x", "..", ".", "a/b", "/abs", ".hidden", "a..b", "x\x00y", "User",
	strings.Repeat("x", 65), "a b", "a\\b", "tab\t", "ü", "a:b",
}

func TestDeliverBadMailbox(t *testing.T) {
	m := newTestMaildir(t, Options{})
	for _, name := range badMailboxNames {
		err := m.Deliver(context.Background(), m.NewID(), []string{"good", name}, strings.NewReader(sampleMsg))
		if !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("Deliver to %q = %v, want store.ErrBadMailbox", name, err)
		}
		if _, err := m.OpenMaildrop(name); !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("OpenMaildrop(%q) = %v, want store.ErrBadMailbox", name, err)
		}
		if _, err := m.CleanTmp(name); !errors.Is(err, store.ErrBadMailbox) {
			t.Errorf("CleanTmp(%q) = %v, want store.ErrBadMailbox", name, err)
		}
	}
	if n := names(t, m.Root()); len(n) != 0 {
		t.Errorf("root holds %v after rejected deliveries", n)
	}
	if n := names(t, filepath.Dir(m.Root())); !slices.Equal(n, []string{"mail"}) {
		t.Errorf("parent of root holds %v", n)
	}
}

func TestDeliverBadArguments(t *testing.T) {
	m := newTestMaildir(t, Options{})
	for _, id := range []string{"", "a/b", "a:2,S", ".x", "sp ace", strings.Repeat("1", 71)} {
		if err := m.Deliver(context.Background(), id, []string{"a"}, strings.NewReader(sampleMsg)); err == nil {
			t.Errorf("Deliver with id %q succeeded", id)
		}
	}
	if err := m.Deliver(context.Background(), m.NewID(), nil, strings.NewReader(sampleMsg)); err == nil {
		t.Error("Deliver to no mailbox succeeded")
	}
}

func TestNewIDUniqueConcurrent(t *testing.T) {
	m := newTestMaildir(t, Options{})
	const workers, per = 8, 100000 / 8
	results := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ids := make([]string, per)
			for i := range ids {
				ids[i] = m.NewID()
			}
			results[w] = ids
		})
	}
	wg.Wait()
	seen := make(map[string]bool, workers*per)
	for _, ids := range results {
		for i, id := range ids {
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
			if !store.IsNewID(id) || !validID(id) {
				t.Fatalf("id %q has the wrong form", id)
			}
			if strings.Trim(id, "0123456789abcdef.") != "" {
				t.Fatalf("id %q has characters outside [0-9a-f.]", id)
			}
			// One goroutine's ids are assigned in order: they must sort so.
			if i > 0 && ids[i-1] >= id {
				t.Fatalf("ids not increasing: %s then %s", ids[i-1], id)
			}
		}
	}
	// The time part is close to now.
	if d := time.Since(time.Unix(0, store.IDTime(m.NewID()))); d < -time.Minute || d > time.Minute {
		t.Errorf("id time off by %v", d)
	}
}

func TestNoSpaceMapping(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		orig := &os.PathError{Op: "write", Path: "/x/tmp/1.eml", Err: errno}
		err := fmt.Errorf("deliver %s: %w", "id", noSpace(orig))
		if !errors.Is(err, store.ErrNoSpace) {
			t.Errorf("%v: not store.ErrNoSpace", errno)
		}
		if !errors.Is(err, errno) {
			t.Errorf("%v: original errno lost", errno)
		}
		var pe *os.PathError
		if !errors.As(err, &pe) || pe != orig {
			t.Errorf("%v: *os.PathError lost", errno)
		}
	}
	other := &os.PathError{Op: "write", Path: "x", Err: syscall.EIO}
	if err := noSpace(other); err != error(other) || errors.Is(err, store.ErrNoSpace) {
		t.Errorf("noSpace(EIO) = %v", err)
	}
	if noSpace(nil) != nil {
		t.Error("noSpace(nil) != nil")
	}
}

// TestGroupCommitDeliveries delivers concurrently to one mailbox: every
// message must be stored intact, and the new/ directory fsyncs, counted by
// the hook (which also widens each fsync by a millisecond), must be fewer
// than the deliveries.
func TestGroupCommitDeliveries(t *testing.T) {
	var newSyncs atomic.Int32
	m := newTestMaildir(t, Options{FsyncHook: func(dir string) {
		if filepath.Base(dir) == subNew {
			newSyncs.Add(1)
			time.Sleep(time.Millisecond)
		}
	}})
	deliver(t, m, "warm-up\r\n", "box")
	newSyncs.Store(0)

	const workers, per = 32, 4
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	bodies := make(map[string]string)
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range per {
				id := m.NewID()
				body := fmt.Sprintf("Subject: %d-%d\r\n\r\n%s\r\n", w, i, id)
				if err := m.Deliver(context.Background(), id, []string{"box"}, strings.NewReader(body)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				bodies[id] = body
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	for id, body := range bodies {
		got, err := os.ReadFile(filepath.Join(m.Root(), "box", "new", id+".eml"))
		if err != nil || string(got) != body {
			t.Fatalf("%s: %q, %v", id, got, err)
		}
	}
	if n := len(names(t, filepath.Join(m.Root(), "box", "new"))); n != workers*per+1 {
		t.Fatalf("new/ holds %d files, want %d", n, workers*per+1)
	}
	syncs := newSyncs.Load()
	t.Logf("%d deliveries, %d new/ fsyncs", workers*per, syncs)
	if syncs < 1 || syncs >= workers*per {
		t.Fatalf("%d new/ fsyncs for %d concurrent deliveries: no group commit", syncs, workers*per)
	}
}

// lockedTmp creates a tmp file named like a live delivery's and holds its
// flock until the test ends.
func lockedTmp(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := flock(f, syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}

func TestCleanTmp(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a", "b")
	tmp := filepath.Join(m.Root(), "a", "tmp")
	stale := m.NewID() + ".eml"
	live := m.NewID() + ".eml"
	youngForeign := "1700000000.M1P2.host"
	oldForeign := "1600000000.M1P2.host"
	os.WriteFile(filepath.Join(tmp, stale), []byte("half a mess"), 0o600)
	lockedTmp(t, filepath.Join(tmp, live))
	os.WriteFile(filepath.Join(tmp, youngForeign), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(tmp, oldForeign), []byte("x"), 0o600)
	old := time.Now().Add(-40 * time.Hour)
	os.Chtimes(filepath.Join(tmp, oldForeign), old, old)
	os.WriteFile(filepath.Join(m.Root(), "b", "tmp", m.NewID()+".eml"), []byte("x"), 0o600)
	newBefore := names(t, filepath.Join(m.Root(), "a", "new"))

	n, err := m.CleanTmp("a")
	if err != nil || n != 2 {
		t.Fatalf("CleanTmp = %d, %v; want 2, nil", n, err)
	}
	got := names(t, tmp)
	slices.Sort(got)
	want := []string{live, youngForeign}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tmp holds %v, want %v", got, want)
	}
	if got := names(t, filepath.Join(m.Root(), "a", "new")); !slices.Equal(got, newBefore) {
		t.Errorf("new/ changed: %v -> %v", newBefore, got)
	}

	n, err = m.Recover()
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1 (mailbox b), nil", n, err)
	}
	if n, err := m.CleanTmp("nosuchbox"); n != 0 || err != nil {
		t.Errorf("CleanTmp(nosuchbox) = %d, %v", n, err)
	}
}

// gateReader yields first, then blocks until gate is closed, then yields
// rest.
type gateReader struct {
	first, rest string
	gate        chan struct{}
	reached     chan struct{}
	stage       int
	off         int // of first
}

func (g *gateReader) Read(p []byte) (int, error) {
	switch g.stage {
	case 0:
		n := copy(p, g.first[g.off:])
		if g.off += n; g.off == len(g.first) {
			g.stage++
		}
		return n, nil
	case 1:
		close(g.reached)
		<-g.gate
		g.stage++
		return copy(p, g.rest), nil
	}
	return 0, io.EOF
}

// gatedDelivery is a delivery to mailbox "a" stopped half-way: more than a
// copy buffer of its message has been read (so some of it is in the tmp
// file), the rest waits for finish.
type gatedDelivery struct {
	id, text string
	gr       *gateReader
	done     chan error
}

// startGated starts a gated delivery and returns once it is stopped.
func startGated(m *Maildir) *gatedDelivery {
	first := "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("a", 998)+"\r\n", copyBufSize/1000+1)
	gd := &gatedDelivery{
		id:   m.NewID(),
		text: first + "end\r\n",
		gr:   &gateReader{first: first, rest: "end\r\n", gate: make(chan struct{}), reached: make(chan struct{})},
		done: make(chan error, 1),
	}
	go func() { gd.done <- m.Deliver(context.Background(), gd.id, []string{"a"}, gd.gr) }()
	<-gd.gr.reached
	return gd
}

// finish lets the delivery go on and checks that it stored its message
// whole.
func (gd *gatedDelivery) finish(t *testing.T, m *Maildir) {
	t.Helper()
	close(gd.gr.gate)
	if err := <-gd.done; err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(m.Root(), "a", subNew, gd.id+msgExt))
	if err != nil || string(b) != gd.text {
		t.Fatalf("stored %d octets, %v; want the %d sent", len(b), err, len(gd.text))
	}
}

// TestCleanTmpSparesLiveDelivery runs the cleaner while a delivery is
// half-way through writing its tmp file.
func TestCleanTmpSparesLiveDelivery(t *testing.T) {
	m := newTestMaildir(t, Options{})
	gd := startGated(m)
	live := stagedData(t, m)
	if len(live) != 1 {
		t.Fatalf("staging directory holds data in %v during delivery, want one file", live)
	}
	m.stage.wait() // the pool is filled (in the locked instance directory)
	n, err := m.Recover()
	if err != nil || n != 0 {
		t.Fatalf("Recover during delivery = %d, %v; want 0, nil", n, err)
	}
	if got := stagedData(t, m); !slices.Equal(got, live) {
		t.Fatalf("after Recover the staging directory holds data in %v, want %v", got, live)
	}
	gd.finish(t, m)
}

// truncReader gives data, then fails with io.ErrUnexpectedEOF, as the SMTP
// DATA reader does when the client goes away mid-message.
type truncReader struct{ data string }

func (r *truncReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestDeliverTruncatedStoresNothing: a message whose reader ends with
// io.ErrUnexpectedEOF (not io.EOF) is not delivered, whatever its length
// relative to the copy buffer.
func TestDeliverTruncatedStoresNothing(t *testing.T) {
	m := newTestMaildir(t, Options{})
	for _, n := range []int{10, copyBufSize - 5, copyBufSize, 3 * copyBufSize} {
		err := m.Deliver(context.Background(), m.NewID(), []string{"a"}, &truncReader{strings.Repeat("x", n)})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d octets then ErrUnexpectedEOF: Deliver = %v", n, err)
		}
	}
	assertEmptyMailbox(t, m, "a")
}
