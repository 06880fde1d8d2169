package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// mailReply opens an SMTP session, sends EHLO and MAIL and returns the
// reply to MAIL.
func mailReply(t *testing.T, s *Server) string {
	t.Helper()
	c := testsupport.Dial(t, s.Listener("smtp").Addr().String())
	c.ExpectReply("220 *")
	c.Send("EHLO client.test\r\n")
	c.ExpectReply("250 *")
	c.Send("MAIL FROM:<a@example.org>\r\n")
	r := c.ExpectReply("*").Last()
	c.Send("QUIT\r\n")
	return r
}

// freeSpaceCheck returns /readyz's status code and its free_space check.
func freeSpaceCheck(t *testing.T, s *Server) (int, string) {
	t.Helper()
	code, body := getJSON(t, s.testURL("/readyz"))
	checks, _ := body["checks"].(map[string]any)
	fs, _ := checks["free_space"].(string)
	return code, fs
}

// TestMinFreeSpaceRefusesMailUntilSpaceReturns: with the mailbox directory
// on an 8 MiB tmpfs and --min-free-space 4MiB, filling the filesystem past
// the floor makes MAIL get 452 4.3.1 (RFC 5321 §4.2.2, RFC 3463 X.3.1, as
// Postfix below queue_minfree) and /readyz 503 with the reason, while POP3
// keeps serving and deleting; freeing the space lets delivery resume
// without a restart. Needs the right to mount (root).
func TestMinFreeSpaceRefusesMailUntilSpaceReturns(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	s := opsServer(t, func(c *config.Config) {
		c.MailboxDir = filepath.Join(mnt, "mail")
		c.MinFreeSpace = 4 << 20
	})
	send(t, s, "before the disk filled")
	if code, fs := freeSpaceCheck(t, s); code != 200 || fs != "ok" {
		t.Fatalf("readyz with room: %d %q", code, fs)
	}

	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 5<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	var r string
	if !testsupport.WaitUntil(10*time.Second, func() bool { r = mailReply(t, s); return !strings.HasPrefix(r, "250") }) {
		t.Fatalf("MAIL below the floor: %q", r)
	}
	if !testsupport.Glob("452 4.3.1 Insufficient system storage*", r) {
		t.Fatalf("MAIL below the floor: %q, want 452 4.3.1", r)
	}
	if code, fs := freeSpaceCheck(t, s); code != 503 || !strings.Contains(fs, "below the floor of 4.0 MiB") {
		t.Errorf("readyz below the floor: %d %q", code, fs)
	}
	c := pop3Dial(t, s)
	c.SendLines("USER user", "PASS pass")
	c.Expect("+OK*", "+OK*")
	c.Send("RETR 1\r\n")
	if msg := strings.Join(c.ExpectMulti("+OK*"), "\n"); !strings.Contains(msg, "before the disk filled") {
		t.Fatalf("RETR below the floor: %q", msg)
	}
	c.Send("DELE 1\r\n")
	c.Expect("+OK*")
	c.Send("QUIT\r\n")
	c.Expect("+OK*")
	if n, _ := filepath.Glob(filepath.Join(mnt, "mail", "user", "new", "*")); len(n) != 0 {
		t.Fatalf("message not deleted below the floor: %v", n)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if !testsupport.WaitUntil(10*time.Second, func() bool { r = mailReply(t, s); return strings.HasPrefix(r, "250") }) {
		t.Fatalf("MAIL after space returned: %q", r)
	}
	send(t, s, "after the space returned")
	if code, fs := freeSpaceCheck(t, s); code != 200 || fs != "ok" {
		t.Errorf("readyz after space returned: %d %q", code, fs)
	}
}

// TestMinFreeSpaceAboveFreeSpaceAndOff: a floor above the free space of
// the real filesystem refuses MAIL with 452 4.3.1 while the web inbox
// still reads and deletes; 0 turns the check off.
func TestMinFreeSpaceAboveFreeSpaceAndOff(t *testing.T) {
	s := opsServer(t, func(c *config.Config) { c.MinFreeSpace = 1 << 60 })
	if r := mailReply(t, s); !testsupport.Glob("452 4.3.1 *", r) {
		t.Errorf("MAIL with the floor above the free space: %q", r)
	}
	if code, fs := freeSpaceCheck(t, s); code != 503 || fs == "ok" {
		t.Errorf("readyz: %d %q", code, fs)
	}
	// The web inbox keeps serving and deleting below the floor.
	id := s.store.NewID()
	if err := s.store.Deliver(context.Background(), id, []string{"user"}, strings.NewReader("Subject: kept\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	var sess struct {
		CSRF string `json:"csrf_token"`
	}
	resp, err := hc.Get(s.testURL("/api/v1/session"))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	resp, err = hc.Get(s.testURL("/api/v1/mailboxes/user/messages/" + id))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("web read below the floor: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("DELETE", s.testURL("/api/v1/mailboxes/user/messages/"+id), nil)
	req.Header.Set("X-CSRF-Token", sess.CSRF)
	resp, err = hc.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("web delete below the floor: %v %v", resp, err)
	}
	resp.Body.Close()
	if l, err := s.store.List("user"); err != nil || len(l) != 0 {
		t.Fatalf("after the web delete below the floor: %d messages, %v", len(l), err)
	}

	s = opsServer(t, func(c *config.Config) { c.MinFreeSpace = 0 })
	if r := mailReply(t, s); !strings.HasPrefix(r, "250 2.1.0") {
		t.Errorf("MAIL with the check off: %q", r)
	}
	if code, fs := freeSpaceCheck(t, s); code != 200 || fs != "ok" {
		t.Errorf("readyz with the check off: %d %q", code, fs)
	}
}
