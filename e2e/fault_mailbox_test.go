package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postoffice/internal/testsupport"
)

// trySend runs one mail transaction on an open SMTP session and returns the
// reply to the end of data.
func trySend(t *testing.T, c *testsupport.Conn, body string) string {
	t.Helper()
	c.Send("MAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("354 *")
	c.Send(body + ".\r\n")
	return c.ExpectReply("*").Last()
}

// sendUntilOK retries a delivery on c until it is accepted, allowing at
// most one temporary failure first (the store notices a vanished mailbox on
// the failed attempt and recreates it on the next), and returns the
// temporary replies seen.
func sendUntilOK(t *testing.T, c *testsupport.Conn, body string) []string {
	t.Helper()
	var temp []string
	for range 3 {
		l := trySend(t, c, body)
		if strings.HasPrefix(l, "250 2.0.0 ") {
			return temp
		}
		if !strings.HasPrefix(l, "451 4.3.0 ") {
			t.Fatalf("delivery got %q, want 250 or 451 4.3.0", l)
		}
		temp = append(temp, l)
	}
	t.Fatalf("delivery still failing after the mailbox came back: %q", temp)
	return nil
}

// The mailbox directory is removed while the server runs: deliveries get a
// clear temporary 451 4.3.0 (never a 5xx, never a crash, nothing partial)
// or recreate the Maildir; POP3 logins keep working; mail flows again.
func TestFaultMailboxRemoved(t *testing.T) {
	requireMaildir(t, "removes the Maildir directory")
	p := startFault(t, "")
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Subject: one\r\n\r\nfirst\r\n")
	box := filepath.Join(p.dir, "user")
	if err := os.RemoveAll(box); err != nil {
		t.Fatal(err)
	}

	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	c.Send("EHLO x\r\n")
	c.ExpectReply("250 *")
	temp := sendUntilOK(t, c, "Subject: two\r\n\r\nafter removal\r\n")
	t.Logf("delivery after removing the mailbox: temporary replies %q", temp)
	if files := mailFiles(t, p.dir, "user"); len(files) != 1 {
		t.Fatalf("%d message files after removal and one delivery, want 1", len(files))
	}
	if err := os.RemoveAll(box); err != nil {
		t.Fatal(err)
	}
	// POP3 while the maildrop is gone: an empty maildrop or a temporary
	// error, never a crash.
	pc := testsupport.Dial(t, p.Addr("pop3"))
	pc.Expect("+OK*")
	pc.Send("USER user\r\nPASS pass\r\n")
	pc.Expect("+OK*")
	if l := pc.Line(); strings.HasPrefix(l, "+OK") {
		pc.Send("STAT\r\n")
		pc.Expect("+OK 0 0")
	} else if !strings.HasPrefix(l, "-ERR [SYS/TEMP] ") {
		t.Fatalf("POP3 login without a maildrop: %q, want +OK or -ERR [SYS/TEMP]", l)
	}
	pc.Send("QUIT\r\n")
	pc.Expect("+OK*")

	l := login(t, p.Addr("pop3"), "user", "pass")
	l.Send("STAT\r\n")
	l.Expect("+OK 0 0")
	l.Send("QUIT\r\n")
	l.Expect("+OK*")
	sendUntilOK(t, c, "Subject: three\r\n\r\nafter the second removal\r\n")
	if files := mailFiles(t, p.dir, "user"); len(files) != 1 {
		t.Fatalf("%d message files after the second removal and one delivery, want 1", len(files))
	}
}

// The mailbox's new/ directory becomes unwritable while the server runs.
// Not being root, the test makes it read-only (chmod 0500); as root, whom
// modes do not stop, it replaces new/ by a plain file. Deliveries get 451
// 4.3.0 and leave nothing in tmp/; POP3 reads the mail that is there or
// answers -ERR [SYS/TEMP]; once new/ is back, mail is accepted again.
func TestFaultMailboxUnwritable(t *testing.T) {
	requireMaildir(t, "makes the Maildir unwritable")
	p := startFault(t, "")
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Subject: one\r\n\r\nfirst\r\n")
	newDir := filepath.Join(p.dir, "user", "new")
	var restore func()
	if os.Geteuid() == 0 {
		moved := newDir + ".away"
		if err := os.Rename(newDir, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(newDir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		restore = func() {
			os.Remove(newDir)
			if err := os.Rename(moved, newDir); err != nil {
				t.Fatal(err)
			}
		}
		t.Log("running as root: new/ replaced by a file")
	} else {
		if err := os.Chmod(newDir, 0o500); err != nil {
			t.Fatal(err)
		}
		restore = func() {
			if err := os.Chmod(newDir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { os.Chmod(newDir, 0o700) })
		t.Log("new/ made read-only")
	}

	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	c.Send("EHLO x\r\n")
	c.ExpectReply("250 *")
	for range 2 {
		if l := trySend(t, c, "Subject: two\r\n\r\nrefused\r\n"); !strings.HasPrefix(l, "451 4.3.0 ") {
			t.Fatalf("delivery into an unwritable new/: %q, want 451 4.3.0", l)
		}
	}
	if n := countFiles(t, filepath.Join(p.dir, "user", "tmp")); n != 0 {
		t.Fatalf("%d files left in tmp/ after failed deliveries", n)
	}
	if left := stagedData(t, p.dir); len(left) != 0 {
		t.Fatalf("data left in .tmp/ after failed deliveries: %v", left)
	}

	pc := testsupport.Dial(t, p.Addr("pop3"))
	pc.Expect("+OK*")
	pc.Send("USER user\r\nPASS pass\r\n")
	pc.Expect("+OK*")
	if l := pc.Line(); strings.HasPrefix(l, "+OK") {
		pc.Send("QUIT\r\n")
		pc.Expect("+OK*")
	} else if !strings.HasPrefix(l, "-ERR [SYS/TEMP] ") {
		t.Fatalf("POP3 login with an unusable new/: %q, want +OK or -ERR [SYS/TEMP]", l)
	}

	restore()
	temp := sendUntilOK(t, c, "Subject: three\r\n\r\naccepted again\r\n")
	t.Logf("after new/ came back: temporary replies %q", temp)
	l := login(t, p.Addr("pop3"), "user", "pass")
	l.Send("STAT\r\n")
	l.Expect("+OK 2 *")
	l.Send("QUIT\r\n")
	l.Expect("+OK*")
}
