package e2e

import (
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

func login(t *testing.T, addr, user, pass string) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.POP3Login(user, pass)
	return c
}

// loginWhenFree logs in, retrying while the maildrop is still held by a
// session whose connection the client just dropped (the server notices the
// drop a moment later).
func loginWhenFree(t *testing.T, addr, user, pass string) *testsupport.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := testsupport.Dial(t, addr)
		c.Expect("+OK*")
		c.Send("USER " + user + "\r\nPASS " + pass + "\r\n")
		c.Expect("+OK*")
		l := c.Line()
		if strings.HasPrefix(l, "+OK maildrop locked and ready") {
			return c
		}
		if !strings.HasPrefix(l, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("login: %q", l)
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// The original design's POP3 session, after an SMTP delivery: byte-for-byte
// retrieval, DELE-then-drop keeps the file, DELE-then-QUIT removes it.
func TestPOP3SeedSession(t *testing.T) {
	requireMaildir(t, "compares with the message file on disk")
	p := start(t, "")
	body := "Subject: Test Email\r\n\r\nHello Bob,\r\n..a line that starts with a dot\r\n"
	id := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, body)
	eml, err := os.ReadFile(filepath.Join(p.dir, "user", "new", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	size := strconv.Itoa(len(eml))

	c := login(t, p.Addr("pop3"), "user", "pass")
	c.Send("STAT\r\n")
	c.Expect("+OK 1 " + size)
	c.Send("LIST\r\n")
	c.Expect("+OK 1 messages (" + size + " octets)")
	if got := c.MultilineText(); got != "1 "+size+"\r\n" {
		t.Fatalf("LIST body %q", got)
	}
	c.Send("UIDL 1\r\n")
	c.Expect("+OK 1 " + id)
	c.Send("RETR 1\r\n")
	c.Expect("+OK " + size + " octets")
	if got := c.MultilineText(); got != string(eml) {
		t.Fatalf("RETR gave %q, file holds %q", got, eml)
	}
	_, msg := stripTrace(t, eml)
	if msg != strings.Replace(body, "..a", ".a", 1) {
		t.Fatalf("message %q", msg)
	}
	c.Send("DELE 1\r\n")
	c.Expect("+OK message 1 deleted")
	c.Close() // drop without QUIT: nothing deleted

	c = loginWhenFree(t, p.Addr("pop3"), "user", "pass")
	c.Send("STAT\r\n")
	c.Expect("+OK 1 " + size)
	c.Send("DELE 1\r\n")
	c.Expect("+OK*")
	c.Send("QUIT\r\n")
	c.Expect("+OK*")
	if files := mailFiles(t, p.dir, "user"); len(files) != 0 {
		t.Fatalf("after QUIT: %v", files)
	}
}

// 500 messages in, 500 out, identical apart from the trace headers; a second
// concurrent login is refused with [IN-USE].
func TestPOP3FiveHundredAndLock(t *testing.T) {
	p := start(t, "")
	const n = 500
	bodies := map[string]string{}
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("Subject: m%d\r\n\r\n.dot %d\r\nline\r\n", i, i)
		id := sendRaw(t, p.Addr("smtp"), "s@test", []string{"r@test"}, strings.Replace(body, ".dot", "..dot", 1))
		bodies[id] = body
	}

	c := login(t, p.Addr("pop3"), "user", "pass")
	second := testsupport.Dial(t, p.Addr("pop3"))
	second.Expect("+OK*")
	second.Send("USER user\r\n")
	second.Expect("+OK*")
	second.Send("PASS pass\r\n")
	second.Expect("-ERR [IN-USE]*")

	c.Send("STAT\r\n")
	c.Expect(fmt.Sprintf("+OK %d *", n))
	c.Send("UIDL\r\n")
	c.Expect("+OK*")
	uidl := strings.Split(strings.TrimSpace(c.MultilineText()), "\r\n")
	if len(uidl) != n {
		t.Fatalf("UIDL listed %d", len(uidl))
	}
	prev := ""
	for i, l := range uidl {
		f := strings.Fields(l)
		if f[0] != strconv.Itoa(i+1) {
			t.Fatalf("UIDL line %q", l)
		}
		if f[1] <= prev {
			t.Fatalf("messages not in delivery order: %s after %s", f[1], prev)
		}
		prev = f[1]
		c.Send("RETR " + f[0] + "\r\n")
		c.Expect("+OK*")
		_, msg := stripTrace(t, []byte(c.MultilineText()))
		if msg != bodies[f[1]] {
			t.Fatalf("message %s: %q, want %q", f[1], msg, bodies[f[1]])
		}
		c.Send("DELE " + f[0] + "\r\n")
		c.Expect("+OK*")
	}
	c.Send("QUIT\r\n")
	c.Expect("+OK*")
	if files := mailFiles(t, p.dir, "user"); len(files) != 0 {
		t.Fatalf("%d files left after deleting all", len(files))
	}
	// The lock is released: a new login works.
	c = login(t, p.Addr("pop3"), "user", "pass")
	c.Send("STAT\r\n")
	c.Expect("+OK 0 0")
}

// The lock holds between two postoffice processes sharing one directory.
func TestPOP3LockAcrossProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mailbox")
	a := start(t, dir)
	b := start(t, dir)
	login(t, a.Addr("pop3"), "user", "pass")
	c := testsupport.Dial(t, b.Addr("pop3"))
	c.Expect("+OK*")
	c.Send("USER user\r\nPASS pass\r\n")
	c.Expect("+OK*")
	c.Expect("-ERR [IN-USE]*")
}

// Files put into the Maildir by other tools are served with CRLF and the
// sizes actually sent.
func TestPOP3ForeignFiles(t *testing.T) {
	requireMaildir(t, "drops foreign files into the Maildir")
	p := start(t, "")
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"b@test"}, "Subject: ours\r\n\r\nx\r\n") // creates the Maildir
	cur := filepath.Join(p.dir, "user", "cur")
	os.WriteFile(filepath.Join(cur, "1700000000.M1P1.host:2,S"), []byte("Subject: lf\n\n.starts with dot\nno final newline"), 0o600)
	c := login(t, p.Addr("pop3"), "user", "pass")
	c.Send("LIST\r\n")
	c.Expect("+OK 2 messages*")
	lines := strings.Split(strings.TrimSpace(c.MultilineText()), "\r\n")
	want := "Subject: lf\r\n\r\n.starts with dot\r\nno final newline\r\n"
	found := false
	for _, l := range lines {
		f := strings.Fields(l)
		c.Send("RETR " + f[0] + "\r\n")
		c.Expect("+OK " + f[1] + " octets")
		got := c.MultilineText()
		if strconv.Itoa(len(got)) != f[1] {
			t.Fatalf("message %s: LIST says %s, RETR sent %d", f[0], f[1], len(got))
		}
		if got == want {
			found = true
			c.Send("UIDL " + f[0] + "\r\n")
			c.Expect("+OK " + f[0] + " 1700000000.M1P1.host")
		}
	}
	if !found {
		t.Fatal("foreign LF file not served as CRLF")
	}
}

// Sent with Go's net/smtp, read back over POP3: byte-identical apart from
// the trace headers, including a dot-stuffed line and 8-bit text.
func TestNetSMTPThenPOP3(t *testing.T) {
	p := start(t, "")
	body := "From: a@example.com\r\nSubject: round trip\r\n\r\n.first dot\r\nGrüße\r\n..two dots\r\n"
	if err := smtp.SendMail(p.Addr("smtp"), nil, "a@example.com", []string{"b@example.com"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	c := login(t, p.Addr("pop3"), "user", "pass")
	c.Send("LIST 1\r\n")
	size := strings.Fields(c.Expect("+OK 1 *"))[2]
	c.Send("RETR 1\r\n")
	c.Expect("+OK " + size + " octets")
	got := c.MultilineText()
	if strconv.Itoa(len(got)) != size {
		t.Fatalf("RETR sent %d octets, LIST said %s", len(got), size)
	}
	if _, msg := stripTrace(t, []byte(got)); msg != body {
		t.Fatalf("got %q, sent %q", msg, body)
	}
}
