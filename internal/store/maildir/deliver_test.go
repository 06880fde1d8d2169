package maildir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// fsyncRecorder records, for each fsync of dir announced by FsyncHook,
// whether the file watched existed at that moment.
type fsyncRecorder struct {
	mu      sync.Mutex
	dir     string // the directory whose fsyncs are recorded
	watched string // the file checked at each of them
	present []bool
	before  func(dir string) // run first, for every directory (fault injection)
}

func (r *fsyncRecorder) hook(dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.before != nil {
		r.before(dir)
	}
	if r.dir != "" && dir == r.dir {
		r.present = append(r.present, exists(r.watched))
	}
}

// watch starts recording the fsyncs of dir, checking file at each.
func (r *fsyncRecorder) watch(dir, file string, before func(string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dir, r.watched, r.present, r.before = dir, file, nil, before
}

// seen returns what was recorded since watch.
func (r *fsyncRecorder) seen() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.present...)
}

// TestDeliverFailedAfterLinkSyncsRemovalBeforeError: a delivery that fails
// after it linked the message into a's new/ removes that link and fsyncs
// a/new with the link gone before Deliver returns its error (the 451 of
// SMTP): a crash after the 451 cannot bring back a message the client was
// told was not taken (RFC 5321 §4.2.5: after a 4yz reply the client sends
// again, and the message would arrive twice). Two failures after the link:
// linking into the second mailbox fails (a file already holds the name),
// and the fsync of the second mailbox's new/ fails (its directory vanishes
// at that instant).
func TestDeliverFailedAfterLinkSyncsRemovalBeforeError(t *testing.T) {
	var rec fsyncRecorder
	m := newTestMaildir(t, Options{FsyncHook: rec.hook})
	deliver(t, m, sampleMsg, "a", "b") // both mailboxes exist and are known
	aNew := filepath.Join(m.Root(), "a", subNew)
	bNew := filepath.Join(m.Root(), "b", subNew)

	t.Run("link", func(t *testing.T) {
		id := m.NewID()
		taken := filepath.Join(bNew, id+msgExt)
		if err := os.WriteFile(taken, []byte("another file\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		rec.watch(aNew, filepath.Join(aNew, id+msgExt), nil)
		err := m.Deliver(context.Background(), id, []string{"a", "b"}, strings.NewReader(sampleMsg))
		seen := rec.seen()
		if err == nil {
			t.Fatal("delivery succeeded although b/new holds its name")
		}
		if exists(filepath.Join(aNew, id+msgExt)) {
			t.Fatal("the failed delivery's link in a/new is still there")
		}
		if !containsFalse(seen) {
			t.Fatalf("fsyncs of a/new during the failed delivery (true: link present) %v: none after the link was removed", seen)
		}
		if b, _ := os.ReadFile(taken); string(b) != "another file\r\n" {
			t.Fatalf("the file in b/new's way was changed: %q", b)
		}
	})

	t.Run("sync", func(t *testing.T) {
		id := m.NewID()
		rec.watch(aNew, filepath.Join(aNew, id+msgExt), func(dir string) {
			if dir == bNew {
				os.RemoveAll(bNew) // the fsync of b/new fails: ENOENT
			}
		})
		err := m.Deliver(context.Background(), id, []string{"a", "b"}, strings.NewReader(sampleMsg))
		seen := rec.seen()
		rec.watch("", "", nil)
		if err == nil {
			t.Fatal("delivery succeeded although the fsync of b/new failed")
		}
		if exists(filepath.Join(aNew, id+msgExt)) {
			t.Fatal("the failed delivery's link in a/new is still there")
		}
		// The first fsync made the link durable; one after its removal
		// must follow.
		if len(seen) < 2 || !seen[0] || seen[len(seen)-1] {
			t.Fatalf("fsyncs of a/new during the failed delivery (true: link present) %v, want the link synced, then its removal", seen)
		}
	})
}

func containsFalse(v []bool) bool {
	for _, b := range v {
		if !b {
			return true
		}
	}
	return false
}

// TestDeliverMailboxOnOtherFilesystem: a mailbox directory that is a
// tmpfs mount (another filesystem than the root, not a bind mount) gets
// its deliveries, alone and together with mailboxes on the root's
// filesystem in either order: a mailbox that link(2) cannot reach from the
// delivery's tmp file gets a copy written and fdatasynced in its own tmp/,
// linked into its new/. Nothing is left in any tmp/ or in the staging
// directory. Needs the right to mount (root).
func TestDeliverMailboxOnOtherFilesystem(t *testing.T) {
	var rec fsyncRecorder
	m := newTestMaildir(t, Options{FsyncHook: rec.hook})
	target := filepath.Join(m.Root(), "t")
	if err := os.MkdirAll(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", target, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(target, syscall.MNT_DETACH) })
	for _, boxes := range [][]string{{"t"}, {"a", "t"}, {"t", "a"}, {"a", "t", "b"}, {"t"}, {"a", "t"}} {
		id := m.NewID()
		rec.watch(filepath.Join(target, subNew), filepath.Join(target, subNew, id+msgExt), nil)
		if err := m.Deliver(context.Background(), id, boxes, strings.NewReader(sampleMsg)); err != nil {
			t.Fatalf("deliver to %v: %v", boxes, err)
		}
		if seen := rec.seen(); len(seen) == 0 || !seen[len(seen)-1] {
			t.Errorf("deliver to %v: t/new not fsynced after the link (%v)", boxes, seen)
		}
		for _, mb := range boxes {
			b, err := os.ReadFile(filepath.Join(m.Root(), mb, subNew, id+msgExt))
			if err != nil || string(b) != sampleMsg {
				t.Fatalf("deliver to %v: %s holds %q, %v", boxes, mb, b, err)
			}
			assertNames(t, filepath.Join(m.Root(), mb, subTmp), nil)
		}
	}
	// A failure after the copy was linked (b/new holds the name) removes
	// the copy and its link too.
	id := m.NewID()
	if err := os.WriteFile(filepath.Join(m.Root(), "b", subNew, id+msgExt), []byte("x\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Deliver(context.Background(), id, []string{"a", "t", "b"}, strings.NewReader(sampleMsg)); err == nil {
		t.Fatal("delivery succeeded although b/new holds its name")
	}
	for _, mb := range []string{"a", "t"} {
		if exists(filepath.Join(m.Root(), mb, subNew, id+msgExt)) {
			t.Errorf("the failed delivery's link in %s/new is still there", mb)
		}
		assertNames(t, filepath.Join(m.Root(), mb, subTmp), nil)
	}
	if d := stagedData(t, m); len(d) != 0 {
		t.Fatalf("data left in the staging directory: %v", d)
	}
}
