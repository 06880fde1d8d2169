package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"postoffice/internal/testsupport"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it at the end of the test. It skips the test where mounting is
// not permitted (not root, no CAP_SYS_ADMIN, no tmpfs).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test needs root to mount a small tmpfs; the in-process variant is internal/server TestFaultDiskFullInjected")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s); the in-process variant is internal/server TestFaultDiskFullInjected", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the filesystem is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	requireMaildir(t, "fills the Maildir's filesystem")
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	for len(buf) > 1 { // fill the last partial blocks too
		buf = buf[:len(buf)/2]
		f.Write(buf)
	}
	return path
}

// Disk full, for real: the mailbox is on a 4 MB tmpfs that a filler file
// fills up. A delivery gets 452 4.3.1 and leaves nothing in new/ or tmp/,
// the session goes on, POP3 still reads the old mail, and once the filler is
// removed the same session delivers again.
func TestFaultDiskFullTmpfs(t *testing.T) {
	requireMaildir(t, "fills the Maildir's filesystem")
	mnt := mountTmpfs(t, "4m")
	dir := filepath.Join(mnt, "mailbox")
	// The free-space floor off: this is the disk filling up under a
	// delivery (ENOSPC), not MAIL refused below the floor (server
	// TestMinFreeSpaceRefusesMailUntilSpaceReturns).
	p := startFault(t, dir, "--min-free-space", "0")
	body := "Subject: before\r\n\r\nstored before the disk filled up\r\n"
	id := sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, body)

	filler := fillDisk(t, mnt)
	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	c.Send("EHLO full.test\r\n")
	c.ExpectReply("250 *")
	big := "Subject: too much\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 200)
	for attempt := 0; attempt < 2; attempt++ {
		c.Send("MAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
		c.ExpectReply("250 *")
		c.ExpectReply("250 *")
		c.ExpectReply("354 *")
		c.Send(big + ".\r\n")
		c.ExpectReply("452 4.3.1 *")
	}
	if files := mailFiles(t, dir, "user"); len(files) != 1 {
		t.Fatalf("after 452: %d message files, want only the earlier one: %v", len(files), files)
	}
	if n := countFiles(t, filepath.Join(dir, "user", "tmp")); n != 0 {
		t.Fatalf("after 452: %d files left in tmp/", n)
	}
	if left := stagedData(t, dir); len(left) != 0 {
		t.Fatalf("after 452: data left in .tmp/: %v", left)
	}

	// Reads keep working on the full disk.
	pc := login(t, p.Addr("pop3"), "user", "pass")
	pc.Send("UIDL 1\r\n")
	pc.Expect("+OK 1 " + id)
	pc.Send("RETR 1\r\n")
	pc.Expect("+OK *")
	if _, msg := stripTrace(t, []byte(pc.MultilineText())); msg != body {
		t.Fatalf("RETR on a full disk gave %q", msg)
	}
	pc.Send("QUIT\r\n")
	pc.Expect("+OK*")

	// Space returns: the same session delivers.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.Send("MAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("354 *")
	c.Send(big + ".\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as *")
	if files := mailFiles(t, dir, "user"); len(files) != 2 {
		t.Fatalf("after space returned: %d message files, want 2", len(files))
	}
	// ProcessState is only set by the harness's Wait; p.exited is the
	// synchronised way to ask whether the server is gone.
	select {
	case <-p.exited:
		t.Fatalf("server died: %v", p.err)
	default:
	}
}
