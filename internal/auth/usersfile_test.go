package auth

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// writeUsers writes content to path and moves its mtime forward, so that a
// change is seen even on file systems with coarse timestamps.
func writeUsers(t *testing.T, path, content string, age time.Duration) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(age)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func TestUsersFileReload(t *testing.T) {
	h := secretHash(t, "$2a$")
	path := filepath.Join(t.TempDir(), "users")
	writeUsers(t, path, "alice:"+h+"\n", -time.Hour)
	var logs testsupport.LogBuffer
	uf, err := OpenUsersFile(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := uf.Current()
	if _, ok := first.Lookup("alice"); !ok {
		t.Fatal("alice missing after open")
	}

	writeUsers(t, path, "alice:"+h+"\nbob:"+h+"\n", -time.Minute)
	if err := uf.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := uf.Current().Lookup("bob"); !ok {
		t.Error("bob missing after Reload")
	}
	if _, ok := first.Lookup("bob"); ok {
		t.Error("an old snapshot changed: snapshots must be immutable")
	}

	good := uf.Current()
	writeUsers(t, path, "alice:"+h+"\nbroken line\n", 0)
	err = uf.Reload()
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("Reload of a broken file = %v, want a file:line error", err)
	}
	if uf.Current() != good {
		t.Error("a failed Reload replaced the snapshot")
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("failed reload not logged: %s", logs.String())
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := uf.Reload(); err == nil || uf.Current() != good {
		t.Errorf("Reload of a missing file = %v, or the snapshot was dropped", err)
	}
}

func TestOpenUsersFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenUsersFile(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("OpenUsersFile(missing) succeeded")
	}
	path := filepath.Join(dir, "users")
	writeUsers(t, path, "bad\n", 0)
	if _, err := OpenUsersFile(path, nil); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("OpenUsersFile(broken) = %v", err)
	}
}

func TestUsersFileWatch(t *testing.T) {
	h := secretHash(t, "$2a$")
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	writeUsers(t, path, "alice:"+h+"\n", -time.Hour)
	var logs testsupport.LogBuffer
	uf, err := OpenUsersFile(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		uf.watch(ctx, 10*time.Millisecond)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// An in-place edit is picked up.
	writeUsers(t, path, "alice:"+h+"\nbob:"+h+"\n", -30*time.Minute)
	testsupport.WaitFor(t, "bob to appear", func() bool { _, ok := uf.Current().Lookup("bob"); return ok })

	// A broken edit keeps the previous snapshot and is logged once.
	good := uf.Current()
	writeUsers(t, path, "alice:"+h+"\nbob:oops\n", -20*time.Minute)
	testsupport.WaitFor(t, "the reload error to be logged", func() bool { return strings.Contains(logs.String(), "reload failed") })
	time.Sleep(50 * time.Millisecond) // several more polls of the unchanged broken file
	if uf.Current() != good {
		t.Error("a broken edit replaced the snapshot")
	}
	if n := strings.Count(logs.String(), "reload failed"); n != 1 {
		t.Errorf("the same broken file was reported %d times, want once", n)
	}

	// A file renamed into place (a new inode), as editors and AddUser do.
	tmp := filepath.Join(dir, "users.new")
	writeUsers(t, tmp, "carol:"+h+"\n", -10*time.Minute)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, "carol to replace alice and bob", func() bool {
		_, ok := uf.Current().Lookup("carol")
		return ok && uf.Current().Len() == 1
	})
}
