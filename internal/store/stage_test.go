package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// stageFiles returns the files of the staging directory with their link
// counts and sizes.
func stageFiles(t *testing.T, m *Maildir) map[string]*syscall.Stat_t {
	t.Helper()
	out := map[string]*syscall.Stat_t{}
	for _, n := range names(t, filepath.Join(m.Root(), stageDirName)) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(m.Root(), stageDirName, n), &st); err != nil {
			t.Fatal(err)
		}
		out[n] = &st
	}
	return out
}

// TestStagePoolPreparedLockedAndRemovedOnClose: after a delivery the pool
// holds stageTarget empty files, each locked (a tmp cleaner cannot take
// it); delivered files lose their staging name; Close removes the pool; a
// delivery after Close still works and leaves nothing behind.
func TestStagePoolPreparedLockedAndRemovedOnClose(t *testing.T) {
	m := newTestMaildir(t, MaildirOptions{})
	if names(t, filepath.Join(m.Root(), stageDirName)) != nil {
		t.Fatal("staging directory made before any delivery")
	}
	var ids []string
	for range stageLow + 2 {
		ids = append(ids, deliver(t, m, sampleMsg, "a"))
	}
	m.stage.wait()
	files := stageFiles(t, m)
	empty := 0
	for n, st := range files {
		switch {
		case st.Size == 0 && st.Nlink == 1:
			empty++
			f, err := os.Open(filepath.Join(m.Root(), stageDirName, n))
			if err != nil {
				t.Fatal(err)
			}
			if err := tryLock(f); !errors.Is(err, ErrLocked) {
				t.Errorf("prepared file %s not locked: %v", n, err)
			}
			f.Close()
		case st.Nlink == 2:
			// A delivered file whose staging name awaits removal.
		default:
			t.Errorf("staging file %s: size %d, %d links", n, st.Size, st.Nlink)
		}
	}
	if empty != m.stage.pooled() || empty < stageLow {
		t.Errorf("%d empty prepared files, pool holds %d; want the same, at least %d", empty, m.stage.pooled(), stageLow)
	}
	// The refiller ran after stageLow deliveries were retired: most
	// staging names of delivered files are gone.
	if linked := len(files) - empty; linked >= stageLow {
		t.Errorf("%d delivered files still have their staging name", linked)
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
	if _, err := os.Stat(filepath.Join(m.Root(), "a", subNew, id+msgExt)); err != nil {
		t.Fatal(err)
	}
}

// TestStageSurvivesRemovedFiles: pool files removed behind the Maildir's
// back (a cleaner that ignores locks, or the whole staging directory
// deleted) cost no delivery.
func TestStageSurvivesRemovedFiles(t *testing.T) {
	m := newTestMaildir(t, MaildirOptions{})
	deliver(t, m, sampleMsg, "a")
	m.stage.wait()
	dir := filepath.Join(m.Root(), stageDirName)
	for n, st := range stageFiles(t, m) {
		if st.Size == 0 {
			os.Remove(filepath.Join(dir, n))
		}
	}
	for range 3 {
		deliver(t, m, sampleMsg, "a")
	}
	m.stage.wait()
	if err := os.RemoveAll(dir); err != nil {
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
}

// TestStageOtherFilesystemUsesMailboxTmp: a mailbox whose directory is not
// on the staging directory's filesystem (link(2) cannot cross) gets its
// tmp file in its own tmp/.
func TestStageOtherFilesystemUsesMailboxTmp(t *testing.T) {
	m := newTestMaildir(t, MaildirOptions{})
	deliver(t, m, sampleMsg, "a")
	v, _ := m.known.Load("a")
	m.known.Store("a", v.(uint64)+1) // as if a/ were another filesystem
	gr := &gateReader{first: "Subject: x\r\n", rest: "\r\nbody\r\n", gate: make(chan struct{}), reached: make(chan struct{})}
	id := m.NewID()
	done := make(chan error, 1)
	go func() { done <- m.Deliver(context.Background(), id, []string{"a"}, gr) }()
	<-gr.reached
	if n := names(t, filepath.Join(m.Root(), "a", subTmp)); !slices.Equal(n, []string{id + msgExt}) {
		t.Errorf("a/tmp holds %v during the delivery, want %s", n, id+msgExt)
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

// assertNames checks the entries of dir.
func assertNames(t *testing.T, dir string, want []string) {
	t.Helper()
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

// TestCleanAllTmpRemovesStagingLeftovers: files a crashed process left in
// the staging directory (ours, unlocked: a cut-off delivery and prepared
// empty files) are removed; another live Maildir's prepared files are not.
func TestCleanAllTmpRemovesStagingLeftovers(t *testing.T) {
	m := newTestMaildir(t, MaildirOptions{})
	deliver(t, m, sampleMsg, "a")
	m.stage.wait()
	live := stageFiles(t, m)
	dir := filepath.Join(m.Root(), stageDirName)
	cut := filepath.Join(dir, newID()+msgExt)
	empty := filepath.Join(dir, newID()+msgExt)
	os.WriteFile(cut, []byte(strings.Repeat("x", 100)), 0o600)
	os.WriteFile(empty, nil, 0o600)

	other, err := NewMaildir(m.Root(), MaildirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := other.CleanAllTmp()
	if err != nil || n < 2 {
		t.Fatalf("CleanAllTmp = %d, %v; want at least the 2 leftovers", n, err)
	}
	for _, p := range []string{cut, empty} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s not removed: %v", p, err)
		}
	}
	for name, st := range live {
		if st.Size == 0 && st.Nlink == 1 {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Errorf("live prepared file %s removed: %v", name, err)
			}
		}
	}
}

// TestNewMaildirMarksRootTopDir: on a filesystem with inode attributes
// (ext4) the root gets chattr +T, so ext4 spreads its directories.
func TestNewMaildirMarksRootTopDir(t *testing.T) {
	m := newTestMaildir(t, MaildirOptions{})
	f, err := os.Open(m.Root())
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
			t.Fatalf("ext4 root flags %#x: top-directory attribute not set", flags)
		}
		t.Skipf("filesystem type %#x keeps no top-directory attribute (%v)", st.Type, err)
	}
}
