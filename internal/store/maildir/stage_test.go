package maildir

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// stageFiles returns the staging files (relative paths) with their stat.
func stageFiles(t *testing.T, m *Maildir) map[string]*syscall.Stat_t {
	t.Helper()
	out := map[string]*syscall.Stat_t{}
	for _, n := range stagedFileNames(t, m) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(m.Root(), stageDirName, n), &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				continue
			}
			t.Fatal(err)
		}
		out[n] = &st
	}
	return out
}

// waitUntil polls cond for up to 5 s.
func waitUntil(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestStagePoolPreparedLockedAndRemovedOnClose: after a delivery the pool
// holds stageTarget empty files in one instance directory, which is locked
// (tmp cleaners skip it); delivered files lose their staging name; Close
// removes the pool and the directory; a delivery after Close still works
// and leaves nothing behind.
func TestStagePoolPreparedLockedAndRemovedOnClose(t *testing.T) {
	m := newTestMaildir(t, Options{})
	if n := names(t, filepath.Join(m.Root(), stageDirName)); n != nil {
		t.Fatalf("staging directory holds %v before any delivery", n)
	}
	var ids []string
	for range stageLow + 2 {
		ids = append(ids, deliver(t, m, sampleMsg, "a"))
	}
	m.stage.wait()
	insts := names(t, filepath.Join(m.Root(), stageDirName))
	if len(insts) != 1 {
		t.Fatalf("staging directory holds %v, want one instance directory", insts)
	}
	d, err := os.Open(filepath.Join(m.Root(), stageDirName, insts[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := tryLock(d); !errors.Is(err, store.ErrLocked) {
		t.Errorf("instance directory not locked: %v", err)
	}
	d.Close()
	empty := 0
	for n, st := range stageFiles(t, m) {
		switch {
		case st.Size == 0 && st.Nlink == 1:
			empty++
		case st.Nlink == 2:
			// A delivered file whose staging name awaits removal.
		default:
			t.Errorf("staging file %s: size %d, %d links", n, st.Size, st.Nlink)
		}
	}
	if empty != m.stage.pooled() || empty < stageLow {
		t.Errorf("%d empty prepared files, pool holds %d; want the same, at least %d", empty, m.stage.pooled(), stageLow)
	}
	// Delivered files lose their staging name within stageRetireDelay.
	if !waitUntil(func() bool {
		for _, st := range stageFiles(t, m) {
			if st.Nlink != 1 || st.Size != 0 {
				return false
			}
		}
		return true
	}) {
		t.Errorf("delivered files keep their staging names: %v", stagedFileNames(t, m))
	}
	for _, id := range ids {
		b, err := os.ReadFile(filepath.Join(m.Root(), "a", subNew, id+msgExt))
		if err != nil || string(b) != sampleMsg {
			t.Fatalf("message %s: %q, %v", id, b, err)
		}
	}

	m.Close()
	if n := names(t, filepath.Join(m.Root(), stageDirName)); len(n) != 0 {
		t.Fatalf("after Close the staging directory holds %v", n)
	}
	id := deliver(t, m, sampleMsg, "a")
	if n := names(t, filepath.Join(m.Root(), stageDirName)); len(n) != 0 {
		t.Fatalf("delivery after Close left %v in the staging directory", n)
	}
	assertNames(t, filepath.Join(m.Root(), "a", subTmp), nil)
	if _, err := os.Stat(filepath.Join(m.Root(), "a", subNew, id+msgExt)); err != nil {
		t.Fatal(err)
	}
}

// TestStageDeletedMessageLeavesNoData: a message removed from its mailbox
// right after delivery does not live on through its staging name.
func TestStageDeletedMessageLeavesNoData(t *testing.T) {
	m := newTestMaildir(t, Options{})
	id := deliver(t, m, sampleMsg, "a")
	if err := os.Remove(filepath.Join(m.Root(), "a", subNew, id+msgExt)); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(func() bool { return len(stagedData(t, m)) == 0 }) {
		t.Fatalf("deleted message's data kept in %v", stagedData(t, m))
	}
}

// TestStageCloseDuringDeliveries: Close while deliveries run loses none
// and, once they are done, leaves nothing in the staging directory.
func TestStageCloseDuringDeliveries(t *testing.T) {
	m := newTestMaildir(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				if err := m.Deliver(context.Background(), m.NewID(), []string{"a"}, strings.NewReader(sampleMsg)); err != nil {
					errs <- err
				}
			}
		}()
		if g == 4 {
			m.Close()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(names(t, filepath.Join(m.Root(), "a", subNew))); n != 64 {
		t.Errorf("%d messages delivered, want 64", n)
	}
	if n := names(t, filepath.Join(m.Root(), stageDirName)); len(n) != 0 {
		t.Errorf("staging directory holds %v after Close and the deliveries", n)
	}
}

// TestStageSurvivesRemovedFiles: pool files removed behind the Maildir's
// back (a cleaner that ignores locks, or the whole staging directory
// deleted) cost no delivery.
func TestStageSurvivesRemovedFiles(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	m := newTestMaildir(t, Options{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	deliver(t, m, sampleMsg, "a")
	m.stage.wait()
	base := filepath.Join(m.Root(), stageDirName)
	for n, st := range stageFiles(t, m) {
		if st.Size == 0 {
			os.Remove(filepath.Join(base, n))
		}
	}
	for range 3 {
		deliver(t, m, sampleMsg, "a")
	}
	m.stage.wait()
	if err := os.RemoveAll(base); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		deliver(t, m, sampleMsg, "a")
	}
	if n := len(names(t, filepath.Join(m.Root(), "a", subNew))); n != 7 {
		t.Fatalf("%d messages in new/, want 7", n)
	}
	if d := stagedData(t, m); len(d) != 0 {
		t.Fatalf("data left in the staging directory: %v", d)
	}
	// The removed files were noticed before use: no message was written
	// twice.
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "delivering again") {
		t.Errorf("a delivery used a removed file:\n%s", logs.String())
	}
}

// TestStageLinkOfVanishedFileRedelivers: when the staged file disappears
// between its check and the link (here: while the message is written), the
// delivery is redone from the open file and succeeds.
func TestStageLinkOfVanishedFileRedelivers(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	gd := startGated(m)
	live := stagedData(t, m)
	if len(live) != 1 {
		t.Fatalf("staging directory holds data in %v, want one file", live)
	}
	if err := os.Remove(filepath.Join(m.Root(), stageDirName, live[0])); err != nil {
		t.Fatal(err)
	}
	gd.finish(t, m)
	if d := stagedData(t, m); len(d) != 0 {
		t.Fatalf("data left in the staging directory: %v", d)
	}
}

// TestStageOtherFilesystemUsesMailboxTmp: a mailbox whose directory is not
// on the staging directory's filesystem (link(2) cannot cross) gets its
// tmp file in its own tmp/.
func TestStageOtherFilesystemUsesMailboxTmp(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	v, _ := m.known.Load("a")
	m.known.Store("a", v.(uint64)+1) // as if a/ were another filesystem
	gr := &gateReader{first: "Subject: x\r\n", rest: "\r\nbody\r\n", gate: make(chan struct{}), reached: make(chan struct{})}
	id := m.NewID()
	done := make(chan error, 1)
	go func() { done <- m.Deliver(context.Background(), id, []string{"a"}, gr) }()
	<-gr.reached
	if n := names(t, filepath.Join(m.Root(), "a", subTmp)); !slices.Equal(n, []string{id + tmpExt}) {
		t.Errorf("a/tmp holds %v during the delivery, want %s", n, id+tmpExt)
	}
	close(gr.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertNames(t, filepath.Join(m.Root(), "a", subTmp), nil)
	b, err := os.ReadFile(filepath.Join(m.Root(), "a", subNew, id+msgExt))
	if err != nil || string(b) != gr.first+gr.rest {
		t.Fatalf("stored %q, %v", b, err)
	}
}

// TestStageBindMountedMailbox: a mailbox directory bind-mounted from the
// same filesystem passes the device check, but link(2) from the staging
// directory fails with EXDEV: the delivery is redone through the mailbox's
// tmp/, and so are the later ones. Needs the right to mount (root).
func TestStageBindMountedMailbox(t *testing.T) {
	m := newTestMaildir(t, Options{})
	src := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.MkdirAll(src, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(m.Root(), "a")
	if err := os.MkdirAll(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(src, target, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(target, syscall.MNT_DETACH) })
	var ids []string
	for range 3 {
		ids = append(ids, deliver(t, m, sampleMsg, "a"))
	}
	for _, id := range ids {
		b, err := os.ReadFile(filepath.Join(target, subNew, id+msgExt))
		if err != nil || string(b) != sampleMsg {
			t.Fatalf("message %s: %q, %v", id, b, err)
		}
	}
	if _, no := m.noStage.Load("a"); !no {
		t.Error("mailbox not marked as unreachable from the staging directory")
	}
	assertNames(t, filepath.Join(target, subTmp), nil)
	if d := stagedData(t, m); len(d) != 0 {
		t.Fatalf("data left in the staging directory: %v", d)
	}
}

// TestStageUnusableBacksOff: when the staging directory cannot be made
// (here a file is in its place) deliveries go through the mailbox's tmp/,
// and the problem is logged once per stageBackoff, not per delivery.
func TestStageUnusableBacksOff(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	m := newTestMaildir(t, Options{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	if err := os.WriteFile(filepath.Join(m.Root(), stageDirName), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		deliver(t, m, sampleMsg, "a")
	}
	if n := len(names(t, filepath.Join(m.Root(), "a", subNew))); n != 10 {
		t.Fatalf("%d messages delivered, want 10", n)
	}
	assertNames(t, filepath.Join(m.Root(), "a", subTmp), nil)
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for 10 deliveries, want 1:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// assertNames checks the entries of dir.
func assertNames(t *testing.T, dir string, want []string) {
	t.Helper()
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

// TestRecoverRemovesStagingLeftovers: what a crashed process left in
// the staging directory (its unlocked instance directory with a cut-off
// delivery and prepared empty files) is removed, directory included; a
// live Maildir's instance directory and files are not.
func TestRecoverRemovesStagingLeftovers(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	m.stage.wait()
	live := stageFiles(t, m)
	dead := filepath.Join(m.Root(), stageDirName, store.NewID())
	if err := os.Mkdir(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dead, store.NewID()+msgExt)
	empty := filepath.Join(dead, store.NewID()+msgExt)
	os.WriteFile(cut, []byte(strings.Repeat("x", 100)), 0o600)
	os.WriteFile(empty, nil, 0o600)

	other, err := New(m.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := other.Recover()
	if err != nil || n != 2 {
		t.Fatalf("Recover = %d, %v; want the 2 leftovers", n, err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead instance directory not removed: %v", err)
	}
	for name, st := range live {
		if st.Size == 0 && st.Nlink == 1 {
			if _, err := os.Stat(filepath.Join(m.Root(), stageDirName, name)); err != nil {
				t.Errorf("live prepared file %s removed: %v", name, err)
			}
		}
	}
}

// TestStagingDirIsTopDir: on ext4 the staging directory gets chattr +T, so
// each instance directory is placed by ext4 in a block group of its own
// choosing (see stage.go).
func TestStagingDirIsTopDir(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	f, err := os.Open(filepath.Join(m.Root(), stageDirName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var flags int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocGetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		t.Skipf("no inode attributes on this filesystem: %v", e)
	}
	if flags&fsTopDirFl == 0 {
		// Filesystems that have attributes but not this one (e.g. btrfs)
		// ignore it.
		var st syscall.Statfs_t
		err := syscall.Statfs(m.Root(), &st)
		if err == nil && st.Type == 0xEF53 {
			t.Fatalf("ext4 staging directory flags %#x: top-directory attribute not set", flags)
		}
		t.Skipf("filesystem type %#x keeps no top-directory attribute (%v)", st.Type, err)
	}
}

// TestStageCloseKeepsLockWhileDelivering: after Close, the instance
// directory of a delivery still writing stays locked, so another process's
// Recover leaves its file alone; the delivery succeeds and then the
// directory goes.
func TestStageCloseKeepsLockWhileDelivering(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	gd := startGated(m)
	m.Close()
	live := stagedData(t, m)
	if len(live) != 1 {
		t.Fatalf("staging directory holds data in %v during the delivery, want one file", live)
	}
	other, err := New(m.Root(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := other.Recover(); err != nil || n != 0 {
		t.Fatalf("Recover during the delivery = %d, %v; want 0, nil", n, err)
	}
	gd.finish(t, m)
	if n := names(t, filepath.Join(m.Root(), stageDirName)); len(n) != 0 {
		t.Fatalf("staging directory holds %v after the delivery", n)
	}
}

// panicReader gives a line, then panics, as a bug in a reader could.
type panicReader struct{ n int }

func (r *panicReader) Read(p []byte) (int, error) {
	if r.n++; r.n > 1 {
		panic("reader bug")
	}
	return copy(p, "Subject: x\r\n"), nil
}

// TestDeliverPanicUndoes: a delivery that panics (the SMTP engine
// recovers) gives its staged file back like a failed one: nothing is left
// and Close can remove the staging directory.
func TestDeliverPanicUndoes(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		m.Deliver(context.Background(), m.NewID(), []string{"a"}, &panicReader{})
	}()
	if n := len(names(t, filepath.Join(m.Root(), "a", subNew))); n != 1 {
		t.Fatalf("%d messages in new/, want 1", n)
	}
	m.Close()
	if n := names(t, filepath.Join(m.Root(), stageDirName)); len(n) != 0 {
		t.Fatalf("after Close the staging directory holds %v", n)
	}
}

// TestStageOldInstanceUsedUpAndRemoved: after a move to a new instance
// directory the pool's files in the old one are used first, and the old
// directory goes once they are.
func TestStageOldInstanceUsedUpAndRemoved(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	m.stage.wait()
	m.stage.mu.Lock()
	old := m.stage.cur.path
	if err := m.stage.newInstanceLocked(); err != nil {
		m.stage.mu.Unlock()
		t.Fatal(err)
	}
	m.stage.mu.Unlock()
	for range 2 * stageTarget {
		deliver(t, m, sampleMsg, "a")
	}
	if !waitUntil(func() bool { m.stage.wait(); return !exists(old) }) {
		t.Fatalf("old instance directory %s still there: %v", old, names(t, old))
	}
}

// TestStageRefillEndsDuringBackoff: a refill that can neither make files
// (backoff after a failure) nor remove an old instance directory (not
// empty) ends at once instead of spinning until the backoff is over.
func TestStageRefillEndsDuringBackoff(t *testing.T) {
	m := newTestMaildir(t, Options{})
	deliver(t, m, sampleMsg, "a")
	m.stage.wait()
	m.stage.mu.Lock()
	stuck := m.stage.cur
	if err := m.stage.newInstanceLocked(); err != nil {
		m.stage.mu.Unlock()
		t.Fatal(err)
	}
	// The old directory's files are not ours to use, and something else
	// is in it.
	m.stage.ready = slices.DeleteFunc(m.stage.ready, func(sf *stagedFile) bool { return sf.inst == stuck })
	m.stage.failed = time.Now()
	m.stage.mu.Unlock()
	if err := os.WriteFile(filepath.Join(stuck.path, "foreign"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.stage.mu.Lock()
	m.stage.retired = nil
	m.stage.refilling = true
	go m.stage.refill()
	m.stage.mu.Unlock()
	ended := make(chan struct{})
	go func() { m.stage.wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(stageBackoff / 2):
		t.Fatal("refill still running half-way through the backoff")
	}
}

// TestStageMovesWhenCreationIsSlow: a refill whose creations cost more CPU
// per file than stageSlowCreateCPU moves the stager to a new instance
// directory, once (at most one move per stageMinRelocate); deliveries go
// on through both directories, and the old one goes when used up.
func TestStageMovesWhenCreationIsSlow(t *testing.T) {
	saved := stageSlowCreateCPU
	stageSlowCreateCPU = -1 // every creation counts as slow
	t.Cleanup(func() { stageSlowCreateCPU = saved })
	var logs bytes.Buffer
	m := newTestMaildir(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	deliver(t, m, sampleMsg, "a")
	m.stage.wait()
	m.stage.mu.Lock()
	var first string
	if len(m.stage.old) == 1 {
		first = m.stage.old[0].path
	}
	cur := m.stage.cur
	m.stage.mu.Unlock()
	if first == "" || cur == nil || first == cur.path {
		t.Fatalf("no move after a slow refill: old %q, current %v\n%s", first, cur, logs.String())
	}
	if !strings.Contains(logs.String(), "staging moved") || !strings.Contains(logs.String(), "cpu_per_file") {
		t.Fatalf("move not logged:\n%s", logs.String())
	}
	// Slow refills go on, but within the minute nothing moves again.
	var ids []string
	for range 3 * stageTarget {
		ids = append(ids, deliver(t, m, sampleMsg, "a"))
	}
	m.stage.wait()
	m.stage.mu.Lock()
	again := m.stage.cur
	m.stage.mu.Unlock()
	if again != cur {
		t.Fatalf("moved again within %v: %s -> %s", stageMinRelocate, cur.path, again.path)
	}
	if !waitUntil(func() bool { m.stage.wait(); return !exists(first) }) {
		t.Fatalf("old instance directory %s still there: %v", first, names(t, first))
	}
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(m.Root(), "a", "new", id+msgExt)); err != nil {
			t.Fatalf("delivered message missing: %v", err)
		}
	}
}

// threadCPUTime measures the calling thread's CPU time: it grows by about
// the time spent computing, and hardly at all while the thread sleeps.
func TestThreadCPUTime(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, ok := threadCPUTime()
	if !ok {
		t.Fatal("CLOCK_THREAD_CPUTIME_ID cannot be read")
	}
	// Compute until the thread has counted 10 ms of CPU: however busy the
	// machine, that comes, and never before 10 ms of wall time.
	w0 := time.Now()
	x := uint64(1)
	var c1 time.Duration
	for {
		for i := 0; i < 1000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		c1, _ = threadCPUTime()
		if c1-c0 >= 10*time.Millisecond || time.Since(w0) > 30*time.Second {
			break
		}
	}
	wall := time.Since(w0)
	if busy := c1 - c0; busy < 10*time.Millisecond || busy > wall+time.Millisecond {
		t.Fatalf("computing for %v counted %v of CPU (x=%d)", wall, busy, x)
	}
	time.Sleep(20 * time.Millisecond)
	c2, _ := threadCPUTime()
	if idle := c2 - c1; idle > 5*time.Millisecond {
		t.Fatalf("sleeping 20ms counted %v of CPU", idle)
	}
}
