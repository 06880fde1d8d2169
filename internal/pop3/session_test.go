package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"postoffice/internal/netpolicy"
	"postoffice/internal/testsupport"
)

const (
	msg1 = "From: alice@example.com\r\nTo: user@example.com\r\nSubject: one\r\n\r\nHello, world.\r\nSecond line.\r\n"
	msg2 = "Subject: two\r\n\r\nbody\r\n"
)

// newTestServer starts a server on b; opts adjust it before it serves.
func newTestServer(t *testing.T, b *fakeBackend, opts ...func(*Server)) (*Server, string) {
	t.Helper()
	srv := &Server{Backend: b, Hostname: "test.example", Logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(srv)
	}
	return srv, testsupport.Serve(t, srv, ErrServerClosed)
}

// TestIssueSession replays the session from the task description with exact
// octet counts.
func TestIssueSession(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	n := len(msg1)

	c.Expect("+OK Postoffice POP3 ready")
	c.SendLines("USER user")
	c.Expect("+OK*")
	c.SendLines("PASS pass")
	c.Expect(fmt.Sprintf("+OK maildrop locked and ready, 1 messages (%d octets)", n))
	c.SendLines("STAT")
	c.Expect(fmt.Sprintf("+OK 1 %d", n))
	c.SendLines("LIST")
	c.Expect(fmt.Sprintf("+OK 1 messages (%d octets)", n), fmt.Sprintf("1 %d", n), ".")
	c.SendLines("RETR 1")
	body := c.ExpectMulti(fmt.Sprintf("+OK %d octets", n))
	if got := strings.Join(body, "\r\n") + "\r\n"; got != msg1 {
		t.Fatalf("RETR body %q, want %q", got, msg1)
	}
	c.SendLines("DELE 1")
	c.Expect("+OK message 1 deleted")
	c.SendLines("QUIT")
	c.Expect("+OK bye")
	c.ExpectClosed()

	d := b.lastDrop(t)
	d.waitClosed(t)
	if got := d.commitCalls(); !reflect.DeepEqual(got, [][]int{{0}}) {
		t.Fatalf("Commit calls %v, want [[0]]", got)
	}
	if b.count("user") != 0 {
		t.Fatalf("mailbox still holds %d messages", b.count("user"))
	}
}

func TestAuthorizationState(t *testing.T) {
	b := newFakeBackend()
	_, addr := newTestServer(t, b, func(s *Server) { s.MaxErrors = 100 })
	c := testsupport.Dial(t, addr)
	c.Expect("+OK Postoffice POP3 ready")

	for _, cmd := range []string{"STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0", "UIDL", "UIDL 1"} {
		c.SendLines(cmd)
		c.Expect("-ERR *")
	}
	c.SendLines("CAPA")
	caps := c.ExpectMulti("+OK Capability list follows")
	want := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL PLAIN", "IMPLEMENTATION Postoffice"}
	if !reflect.DeepEqual(caps, want) {
		t.Fatalf("CAPA %q, want %q", caps, want)
	}
	c.SendLines("AUTH")
	if mechs := c.ExpectMulti("+OK"); !reflect.DeepEqual(mechs, []string{"PLAIN"}) {
		t.Fatalf("AUTH mechanisms %q", mechs)
	}
	c.SendLines("AUTH CRAM-MD5")
	c.Expect("-ERR *")
	c.SendLines("STLS") // no TLSConfig
	c.Expect("-ERR *")
	c.SendLines("APOP user 0123456789abcdef0123456789abcdef")
	c.Expect("-ERR unknown command")
	c.SendLines("quit") // case-insensitive
	c.Expect("+OK bye")
	c.ExpectClosed()
	if b.loginCount() != 0 {
		t.Fatalf("backend saw %d logins", b.logins)
	}
}

func TestTransactionState(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1, msg2)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")

	for _, cmd := range []string{"USER user", "PASS pass", "AUTH PLAIN", "AUTH", "STLS", "APOP x y", "XYZ"} {
		c.SendLines(cmd)
		c.Expect("-ERR *")
	}
	c.SendLines("NOOP")
	c.Expect("+OK")
	c.SendLines("noop")
	c.Expect("+OK")
	c.SendLines("CAPA")
	caps := c.ExpectMulti("+OK Capability list follows")
	// RFC 2449 §5: what AUTHORIZATION offered is announced in TRANSACTION too.
	want := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL PLAIN", "IMPLEMENTATION Postoffice"}
	if !reflect.DeepEqual(caps, want) {
		t.Fatalf("CAPA %q, want %q", caps, want)
	}
	c.SendLines("UIDL")
	if got := c.ExpectMulti("+OK*"); !reflect.DeepEqual(got, []string{"1 uid-user-1", "2 uid-user-2"}) {
		t.Fatalf("UIDL %q", got)
	}
	c.SendLines("UIDL 2")
	c.Expect("+OK 2 uid-user-2")
	c.SendLines("LIST 2")
	c.Expect(fmt.Sprintf("+OK 2 %d", len(msg2)))
	c.SendLines("DELE 1")
	c.Expect("+OK message 1 deleted")
	// RFC 1939 §5: deleted messages are left out of STAT, LIST and UIDL.
	c.SendLines("STAT")
	c.Expect(fmt.Sprintf("+OK 1 %d", len(msg2)))
	c.SendLines("LIST")
	c.ExpectMulti(fmt.Sprintf("+OK 1 messages (%d octets)", len(msg2)))
	c.SendLines("UIDL")
	if got := c.ExpectMulti("+OK*"); !reflect.DeepEqual(got, []string{"2 uid-user-2"}) {
		t.Fatalf("UIDL after DELE %q", got)
	}
	for _, cmd := range []string{"RETR 1", "TOP 1 0", "LIST 1", "UIDL 1", "DELE 1"} {
		c.SendLines(cmd)
		c.Expect("-ERR message 1 already deleted")
	}
	c.SendLines("QUIT")
	c.Expect("+OK bye")
	c.ExpectClosed()
	d := b.lastDrop(t)
	d.waitClosed(t)
	if got := d.commitCalls(); !reflect.DeepEqual(got, [][]int{{0}}) {
		t.Fatalf("Commit calls %v", got)
	}
}

func TestSyntaxErrors(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b, func(s *Server) { s.MaxErrors = 100 })
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	for _, cmd := range []string{"STAT 1", "RETR", "RETR 1 2", "DELE", "TOP 1", "TOP 1 x", "TOP 1 -1", "LIST 1 2", "NOOP x", "RSET 1"} {
		c.SendLines(cmd)
		c.Expect("-ERR *")
	}
	// Nothing was deleted by any of that.
	c.SendLines("STAT")
	c.Expect(fmt.Sprintf("+OK 1 %d", len(msg1)))
}

func TestRset(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1, msg2)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	c.SendLines("DELE 1", "DELE 2", "STAT", "RSET", "STAT", "RETR 2")
	c.Expect("+OK message 1 deleted", "+OK message 2 deleted", "+OK 0 0")
	total := len(msg1) + len(msg2)
	c.Expect(fmt.Sprintf("+OK maildrop has 2 messages (%d octets)", total), fmt.Sprintf("+OK 2 %d", total))
	c.ExpectMulti("+OK * octets")
	c.SendLines("QUIT")
	c.Expect("+OK bye")
	d := b.lastDrop(t)
	d.waitClosed(t)
	if got := d.commitCalls(); len(got) != 0 {
		t.Fatalf("Commit called %v after RSET", got)
	}
}

// TestDeleThenDropCommitsNothing: RFC 1939 §6, a session that ends without
// QUIT never enters UPDATE.
func TestDeleThenDropCommitsNothing(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1, msg2)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	c.SendLines("DELE 1", "DELE 2")
	c.Expect("+OK*", "+OK*")
	c.Close()
	d := b.lastDrop(t)
	d.waitClosed(t)
	if got := d.commitCalls(); len(got) != 0 {
		t.Fatalf("Commit called %v", got)
	}
	if b.isLocked("user") {
		t.Fatal("lock not released")
	}
	if b.count("user") != 2 {
		t.Fatalf("mailbox holds %d messages, want 2", b.count("user"))
	}
}

func TestDeleThenQuitCommitsIndexes(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1, msg2, msg1, msg2)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	c.SendLines("DELE 4", "DELE 2", "QUIT")
	c.Expect("+OK*", "+OK*", "+OK bye")
	d := b.lastDrop(t)
	d.waitClosed(t)
	if got := d.commitCalls(); !reflect.DeepEqual(got, [][]int{{1, 3}}) {
		t.Fatalf("Commit calls %v, want [[1 3]]", got)
	}
	// The lock is released before +OK: logging in again at once works.
	c2 := testsupport.Dial(t, c.RemoteAddr().String())
	c2.POP3Login("user", "pass")
	c2.SendLines("STAT")
	c2.Expect(fmt.Sprintf("+OK 2 %d", 2*len(msg1)))
}

func TestCommitFailure(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	b.commitErr = errors.New("disk on fire")
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	c.SendLines("DELE 1", "QUIT")
	c.Expect("+OK*", "-ERR [SYS/TEMP] some deleted messages not removed (conn *)")
	c.ExpectClosed()
	d := b.lastDrop(t)
	d.waitClosed(t)
	if len(d.commitCalls()) != 1 {
		t.Fatal("Commit not called")
	}
}

func TestMaildropInUse(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b)
	c1 := testsupport.Dial(t, addr)
	c1.POP3Login("user", "pass")

	c2 := testsupport.Dial(t, addr)
	c2.Expect("+OK*")
	c2.SendLines("USER user", "PASS pass")
	c2.Expect("+OK*", "-ERR [IN-USE] Mailbox is locked by another session")

	c1.SendLines("QUIT")
	c1.Expect("+OK bye")
	c2.SendLines("USER user", "PASS pass")
	c2.Expect("+OK*", "+OK maildrop locked and ready, 1 messages*")
}

func TestTop(t *testing.T) {
	const noBlank = "Subject: x\r\nFrom: y\r\n"
	const long = "Subject: l\r\n\r\nb1\r\nb2\r\nb3\r\n"
	b := newFakeBackend()
	b.add("user", long, noBlank, "")
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	for _, tc := range []struct {
		cmd  string
		want string
	}{
		{"TOP 1 0", "Subject: l\r\n\r\n"},
		{"TOP 1 1", "Subject: l\r\n\r\nb1\r\n"},
		{"TOP 1 2", "Subject: l\r\n\r\nb1\r\nb2\r\n"},
		{"TOP 1 3", long},
		{"TOP 1 100", long},
		{"TOP 1 99999999999999999999", long},
		// Header fields only, no blank line: the fields, then the blank
		// line RFC 1939 §7 has TOP send (package mailheader's rule).
		{"TOP 2 0", noBlank + "\r\n"},
		{"TOP 2 5", noBlank + "\r\n"},
	} {
		c.SendLines(tc.cmd)
		got := strings.Join(c.ExpectMulti("+OK*"), "\r\n") + "\r\n"
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, got, tc.want)
		}
	}
	// An empty message: nothing between +OK and the terminator.
	c.SendLines("TOP 3 0", "RETR 3")
	if got := c.ExpectMulti("+OK*"); len(got) != 0 {
		t.Errorf("TOP of empty message: %q", got)
	}
	if got := c.ExpectMulti("+OK 0 octets"); len(got) != 0 {
		t.Errorf("RETR of empty message: %q", got)
	}
}

// readRaw reads a multi-line reply and returns its raw bytes, terminator
// included.
func readRaw(t testing.TB, c *testsupport.Conn) []byte {
	t.Helper()
	var buf bytes.Buffer
	for {
		l, err := c.R.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		buf.Write(l)
		if string(l) == ".\r\n" {
			return buf.Bytes()
		}
	}
}

func TestDotStuffing(t *testing.T) {
	const m = ".\r\n..\r\n.x\r\nno dot\r\n. \r\n"
	b := newFakeBackend()
	b.add("user", m)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	c.SendLines("RETR 1")
	c.Expect(fmt.Sprintf("+OK %d octets", len(m)))
	got := string(readRaw(t, c))
	want := "..\r\n...\r\n..x\r\nno dot\r\n.. \r\n.\r\n"
	if got != want {
		t.Fatalf("wire %q, want %q", got, want)
	}
	// The first line is no header field: the header is empty, TOP sends
	// the blank line in its place, then the body, stuffed as by RETR.
	c.SendLines("TOP 1 5")
	c.Expect("+OK*")
	if got := string(readRaw(t, c)); got != "\r\n"+want {
		t.Fatalf("TOP wire %q, want %q", got, "\r\n"+want)
	}
}

func TestWriteDotStuffedUnit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		top  int64
		want string
	}{
		{"", -1, ".\r\n"},
		{"a\r\n", -1, "a\r\n.\r\n"},
		{"a", -1, "a\r\n.\r\n"},   // defensive CRLF
		{"a\r", -1, "a\r\n.\r\n"}, // completes the CRLF
		{".a\n.b\n", -1, "..a\n..b\n\r\n.\r\n"},
		{"h:\r\n\r\n.b\r\nc\r\n", 1, "h:\r\n\r\n..b\r\n.\r\n"},
		{"h:\r\n\r\n", 0, "h:\r\n\r\n.\r\n"},
		{"h:\r\n\r\n\r\n\r\n", 1, "h:\r\n\r\n\r\n.\r\n"},
		// Package mailheader's rule: a line that is no field ends the
		// header and starts the body; TOP sends the missing blank line.
		{"S: x\r\nHello\r\n.b\r\n", 0, "S: x\r\n\r\n.\r\n"},
		{"S: x\r\nHello\r\n.b\r\n", 1, "S: x\r\n\r\nHello\r\n.\r\n"},
		{"S: x\r\nHello\r\n.b\r\n", 2, "S: x\r\n\r\nHello\r\n..b\r\n.\r\n"},
		{"S: x\r\n\tfolded\r\nHello\r\n", 0, "S: x\r\n\tfolded\r\n\r\n.\r\n"},
		{"S: x\r\n", 3, "S: x\r\n\r\n.\r\n"},
		{"S: x", 0, "S: x\r\n\r\n.\r\n"},
		{"", 0, ".\r\n"},
		{"S: x\r\nHello\r\n", -1, "S: x\r\nHello\r\n.\r\n"}, // RETR sends the message as it is
	} {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if _, err := writeDotStuffed(w, strings.NewReader(tc.in), tc.top); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if out.String() != tc.want {
			t.Errorf("writeDotStuffed(%q, %d) = %q, want %q", tc.in, tc.top, out.String(), tc.want)
		}
	}
}

// TestLongLineRoundTrip: a 1 MB line crosses many read buffers; it must
// arrive intact, stuffed once at its start only.
func TestLongLineRoundTrip(t *testing.T) {
	line := "." + strings.Repeat("x.", 512<<10) // 1 MiB + 1, dots at buffer edges
	m := "Subject: big\r\n\r\n" + line + "\r\n.\r\n"
	b := newFakeBackend()
	b.add("user", m)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	c.SendLines("RETR 1")
	c.Expect(fmt.Sprintf("+OK %d octets", len(m)))
	raw := readRaw(t, c)
	want := "Subject: big\r\n\r\n." + line + "\r\n..\r\n.\r\n"
	if string(raw) != want {
		t.Fatalf("1 MB line did not round-trip: got %d octets, want %d", len(raw), len(want))
	}
	c.SendLines("NOOP")
	c.Expect("+OK")
}

func TestBadMessageNumbers(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1, msg2)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	for _, n := range []string{"0", "-1", "+1", "3", "99", "abc", "1a", "0x1", "99999999999999999999999999", "4294967297", "1.0"} {
		for _, verb := range []string{"RETR %s", "DELE %s", "LIST %s", "UIDL %s", "TOP %s 0"} {
			c.SendLines(fmt.Sprintf(verb, n))
			c.Expect("-ERR no such message")
		}
	}
	c.SendLines("RETR 01") // leading zeros are still decimal
	c.ExpectMulti(fmt.Sprintf("+OK %d octets", len(msg1)))
	c.SendLines("STAT")
	c.Expect(fmt.Sprintf("+OK 2 %d", len(msg1)+len(msg2)))
}

func TestCommandLineLength(t *testing.T) {
	b := newFakeBackend()
	b.pass[strings.Repeat("u", 248)] = "p"
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	// RFC 2449 §4: 255 octets including CRLF is the limit.
	c.SendLines("USER " + strings.Repeat("u", 248)) // 253 + CRLF
	c.Expect("+OK*")
	c.SendLines("USER " + strings.Repeat("u", 249)) // 254 + CRLF
	c.Expect("-ERR line too long")
	c.SendLines("USER " + strings.Repeat("u", 100000))
	c.Expect("-ERR line too long")
	c.SendLines("CAPA")
	c.ExpectMulti("+OK*")
}

func TestAuthPlain(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b, func(s *Server) { s.MaxAuthFailures = 10 })

	t.Run("initial response", func(t *testing.T) {
		c := testsupport.Dial(t, addr)
		c.Expect("+OK*")
		c.SendLines("AUTH PLAIN " + enc("\x00user\x00pass"))
		c.Expect("+OK maildrop locked and ready, 1 messages*")
		c.SendLines("QUIT")
		c.Expect("+OK bye")
		b.lastDrop(t).waitClosed(t)
	})
	t.Run("continuation", func(t *testing.T) {
		c := testsupport.Dial(t, addr)
		c.Expect("+OK*")
		c.SendLines("auth plain")
		c.Expect("+ ")
		c.SendLines(enc("user\x00user\x00pass"))
		c.Expect("+OK maildrop locked*")
		c.SendLines("QUIT")
		c.Expect("+OK bye")
		b.lastDrop(t).waitClosed(t)
	})
	t.Run("failures", func(t *testing.T) {
		c := testsupport.Dial(t, addr)
		c.Expect("+OK*")
		c.SendLines("AUTH PLAIN")
		c.Expect("+ ")
		c.SendLines("*")
		c.Expect("-ERR *")
		c.SendLines("AUTH PLAIN !!!notbase64")
		c.Expect("-ERR *")
		c.SendLines("AUTH PLAIN")
		c.Expect("+ ")
		c.SendLines("@@@")
		c.Expect("-ERR *")
		c.SendLines("AUTH PLAIN =")
		c.Expect("-ERR [AUTH] *")
		c.SendLines("AUTH PLAIN " + enc("\x00user\x00wrong"))
		c.Expect("-ERR [AUTH] Authentication failed")
		c.SendLines("AUTH PLAIN " + enc("admin\x00user\x00pass")) // no proxy logins
		c.Expect("-ERR [AUTH] *")
		c.SendLines("AUTH PLAIN " + enc("user\x00pass"))
		c.Expect("-ERR [AUTH] *")
		c.SendLines("AUTH PLAIN a b c")
		c.Expect("-ERR *")
		// Still usable afterwards.
		c.SendLines("AUTH PLAIN " + enc("\x00user\x00pass"))
		c.Expect("+OK maildrop locked*")
	})
}

func TestPassRules(t *testing.T) {
	b := newFakeBackend()
	b.pass["bob"] = "two words "
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("PASS pass")
	c.Expect("-ERR PASS must follow USER")
	c.SendLines("USER user", "CAPA", "PASS pass")
	c.Expect("+OK*")
	c.ExpectMulti("+OK*")
	c.Expect("-ERR PASS must follow USER")
	c.SendLines("USER", "USER a b")
	c.Expect("-ERR *", "-ERR *")
	// The password is the rest of the line, spaces included.
	c.SendLines("USER bob", "PASS two words ")
	c.Expect("+OK*", "+OK maildrop locked and ready, 0 messages (0 octets)")
}

func TestPlaintextRefused(t *testing.T) {
	b := newFakeBackend()
	srv := &Server{Backend: b, IsLocal: func(netip.Addr) bool { return false }, Logger: slog.New(slog.DiscardHandler)}
	addr := testsupport.Serve(t, srv, ErrServerClosed)
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("CAPA")
	caps := c.ExpectMulti("+OK*")
	for _, cp := range caps {
		if cp == "USER" || strings.HasPrefix(cp, "SASL") {
			t.Fatalf("CAPA offers %q on an insecure connection: %q", cp, caps)
		}
	}
	c.SendLines("USER user")
	c.Expect("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections")
	c.SendLines("PASS pass")
	c.Expect("-ERR *")
	c.SendLines("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00pass")))
	c.Expect("-ERR [AUTH] Plaintext*")
	c.SendLines("AUTH")
	if m := c.ExpectMulti("+OK"); len(m) != 0 {
		t.Fatalf("AUTH lists %q", m)
	}
	if b.loginCount() != 0 {
		t.Fatal("backend was asked to log in")
	}

	t.Run("AllowInsecureAuth", func(t *testing.T) {
		srv := &Server{Backend: b, IsLocal: func(netip.Addr) bool { return false }, AllowInsecureAuth: true, Logger: slog.New(slog.DiscardHandler)}
		c := testsupport.Dial(t, testsupport.Serve(t, srv, ErrServerClosed))
		c.POP3Login("user", "pass")
	})
}

func TestSTLS(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	serverTLS, clientTLS := testsupport.TLSPair(t, "mx.test")
	srv := &Server{Backend: b, TLSConfig: serverTLS, IsLocal: func(netip.Addr) bool { return false }, Logger: slog.New(slog.DiscardHandler)}
	addr := testsupport.Serve(t, srv, ErrServerClosed)
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("CAPA")
	caps := c.ExpectMulti("+OK*")
	if !contains(caps, "STLS") || contains(caps, "USER") {
		t.Fatalf("CAPA before TLS: %q", caps)
	}
	// RFC 2595 §4: a command pipelined after STLS in plaintext is
	// discarded, never answered.
	c.SendLines("STLS", "USER injected")
	c.Expect("+OK Begin TLS negotiation")
	if c.R.Buffered() != 0 {
		t.Fatal("server sent more after +OK")
	}
	c.StartTLS(clientTLS)
	c.SendLines("CAPA")
	caps = c.ExpectMulti("+OK Capability list follows")
	if contains(caps, "STLS") || !contains(caps, "USER") || !contains(caps, "SASL PLAIN") {
		t.Fatalf("CAPA after TLS: %q", caps)
	}
	c.SendLines("STLS")
	c.Expect("-ERR *")
	c.SendLines("PASS pass") // the injected USER was not acted on
	c.Expect("-ERR PASS must follow USER")
	c.SendLines("USER user", "PASS pass", "STAT")
	c.Expect("+OK*", "+OK maildrop locked*", fmt.Sprintf("+OK 1 %d", len(msg1)))
	c.SendLines("QUIT")
	c.Expect("+OK bye")
}

func TestImplicitTLS(t *testing.T) {
	b := newFakeBackend()
	serverTLS, clientTLS := testsupport.TLSPair(t, "mx.test")
	srv := &Server{Backend: b, TLSConfig: serverTLS, IsLocal: func(netip.Addr) bool { return false }, Logger: slog.New(slog.DiscardHandler)}
	addr := testsupport.ServeOn(t, srv, tls.NewListener(testsupport.Listen(t), serverTLS), ErrServerClosed)
	c := testsupport.DialTLS(t, addr, clientTLS)
	c.Expect("+OK Postoffice POP3 ready")
	c.SendLines("CAPA")
	if caps := c.ExpectMulti("+OK*"); contains(caps, "STLS") || !contains(caps, "USER") {
		t.Fatalf("CAPA on POP3S: %q", caps)
	}
	c.SendLines("USER user", "PASS pass")
	c.Expect("+OK*", "+OK maildrop locked*")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestPipelining(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1, msg2)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("CAPA", "USER user", "PASS pass", "STAT", "LIST", "UIDL 1", "RETR 2", "TOP 1 0", "DELE 1", "NOOP", "BOGUS", "QUIT")
	c.ExpectMulti("+OK Capability list follows")
	c.Expect("+OK*", "+OK maildrop locked*", "+OK 2 *")
	c.ExpectMulti("+OK 2 messages*")
	c.Expect("+OK 1 uid-user-1")
	if got := strings.Join(c.ExpectMulti(fmt.Sprintf("+OK %d octets", len(msg2))), "\r\n") + "\r\n"; got != msg2 {
		t.Fatalf("RETR 2 = %q", got)
	}
	c.ExpectMulti("+OK*")
	c.Expect("+OK message 1 deleted", "+OK", "-ERR unknown command", "+OK bye")
	c.ExpectClosed()
}

func TestMaxAuthFailures(t *testing.T) {
	b := newFakeBackend()
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	for range 2 {
		c.SendLines("USER user", "PASS wrong")
		c.Expect("+OK*", "-ERR [AUTH] Authentication failed")
	}
	c.SendLines("USER user", "PASS wrong")
	c.Expect("+OK*", "-ERR [AUTH] Authentication failed")
	c.ExpectClosed()
}

func TestMaxErrors(t *testing.T) {
	b := newFakeBackend()
	_, addr := newTestServer(t, b, func(s *Server) { s.MaxErrors = 3 })
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("X", "STAT", "")
	c.Expect("-ERR unknown command", "-ERR *", "-ERR unknown command", "-ERR too many errors*")
	c.ExpectClosed()
}

func TestBackendErrors(t *testing.T) {
	b := newFakeBackend()
	_, addr := newTestServer(t, b)

	b.set(func(b *fakeBackend) { b.failErr = errors.New("database down") })
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("USER user", "PASS pass")
	c.Expect("+OK*", "-ERR [SYS/TEMP] * (conn *)")

	b.set(func(b *fakeBackend) { b.failErr = ErrBlocked })
	c.SendLines("USER user", "PASS pass")
	c.Expect("+OK*", "-ERR [AUTH] *")
	c.ExpectClosed()
}

func TestOpenError(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	b.set(func(b *fakeBackend) { b.openErr = errors.New("gone") })
	c.SendLines("RETR 1", "TOP 1 1", "NOOP")
	c.Expect("-ERR [SYS/TEMP] *", "-ERR [SYS/TEMP] *", "+OK")
}

func TestPanicRecovered(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b)
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	b.set(func(b *fakeBackend) { b.panicOpen = true })
	c.SendLines("RETR 1")
	c.Expect("-ERR [SYS/TEMP] internal error (conn *)")
	c.ExpectClosed()
	b.lastDrop(t).waitClosed(t)
	if got := b.lastDrop(t).commitCalls(); len(got) != 0 {
		t.Fatalf("Commit after panic: %v", got)
	}

	b.set(func(b *fakeBackend) { b.panicOpen, b.panicLogin = false, true })
	c = testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("USER user", "PASS pass")
	c.Expect("+OK*", "-ERR [SYS/TEMP] internal error*")
	c.ExpectClosed()
}

func TestLoginTimeout(t *testing.T) {
	b := newFakeBackend()
	_, addr := newTestServer(t, b, func(s *Server) { s.LoginTimeout = 300 * time.Millisecond })
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.Expect("-ERR [SYS/TEMP] autologout*")
	c.ExpectClosed()

	// Trickling a line one octet at a time does not stretch the phase: the
	// connection is gone long before 400 octets at 10 ms each.
	c = testsupport.Dial(t, addr)
	c.Expect("+OK*")
	closed := false
	for range 400 {
		if _, err := c.Write([]byte("x")); err != nil {
			closed = true
			break
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.R.Peek(1); err == nil {
			break // the autologout reply arrived
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if !closed {
		c.Expect("-ERR [SYS/TEMP] autologout*")
	}
}

func TestIdleTimeout(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b, func(s *Server) { s.IdleTimeout = 300 * time.Millisecond })
	c := testsupport.Dial(t, addr)
	c.POP3Login("user", "pass")
	c.SendLines("DELE 1")
	c.Expect("+OK*")
	c.Expect("-ERR [SYS/TEMP] autologout*")
	c.ExpectClosed()
	d := b.lastDrop(t)
	d.waitClosed(t)
	if len(d.commitCalls()) != 0 {
		t.Fatal("Commit on autologout")
	}
}

func TestShutdown(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	l := testsupport.Listen(t)
	srv := &Server{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	c := testsupport.Dial(t, l.Addr().String())
	c.POP3Login("user", "pass")
	c.SendLines("DELE 1")
	c.Expect("+OK*")
	idle := testsupport.Dial(t, l.Addr().String())
	idle.Expect("+OK*")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	c.Expect("-ERR [SYS/TEMP] server shutting down")
	c.ExpectClosed()
	idle.Expect("-ERR [SYS/TEMP] server shutting down")
	idle.ExpectClosed()
	d := b.lastDrop(t)
	d.waitClosed(t)
	if len(d.commitCalls()) != 0 {
		t.Fatal("Commit on shutdown")
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatal("listener still accepting")
	}
	if err := srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestShutdownForce: a client that never reads blocks a write; Shutdown
// closes it when its context ends.
func TestShutdownForce(t *testing.T) {
	b := newFakeBackend()
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 1<<18) // 4.5 MB
	b.add("user", big)
	l := testsupport.Listen(t)
	srv := &Server{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go srv.Serve(l)
	c := testsupport.Dial(t, l.Addr().String())
	c.POP3Login("user", "pass")
	c.SendLines("RETR 1") // and never read the reply
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	b.lastDrop(t).waitClosed(t)
}

func TestConnectionLimit(t *testing.T) {
	b := newFakeBackend()
	lim := &netpolicy.Limiter{Max: 1}
	srv := &Server{Backend: b, Limiter: lim, Logger: slog.New(slog.DiscardHandler)}
	addr := testsupport.Serve(t, srv, ErrServerClosed)
	c1 := testsupport.Dial(t, addr)
	c1.Expect("+OK*")
	c2 := testsupport.Dial(t, addr)
	c2.Expect("-ERR [SYS/TEMP] too many connections")
	c2.ExpectClosed()
	c1.SendLines("QUIT")
	c1.Expect("+OK bye")
	c1.ExpectClosed()
	// The slot is released once the first session is gone.
	testsupport.WaitFor(t, "the limiter slot to be released", func() bool { return lim.Count() == 0 })
	testsupport.Dial(t, addr).Expect("+OK Postoffice POP3 ready")
}

func TestLogging(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	var logs testsupport.LogBuffer
	srv := &Server{Backend: b, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	addr := testsupport.Serve(t, srv, ErrServerClosed)
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	c.SendLines("USER user", "PASS s3cret-wrong", "USER user", "PASS pass", "RETR 1", "DELE 1", "QUIT")
	c.Expect("+OK*", "-ERR [AUTH]*", "+OK*", "+OK*")
	c.ExpectMulti("+OK*")
	c.Expect("+OK*", "+OK bye")
	b.lastDrop(t).waitClosed(t)
	c.ExpectClosed()
	testsupport.WaitUntil(10*time.Second, func() bool { return strings.Contains(logs.String(), "pop3 disconnect") })
	out := logs.String()
	if strings.Contains(out, "s3cret") || strings.Contains(out, "pass\"") {
		t.Fatalf("password in log:\n%s", out)
	}
	for _, want := range []string{"pop3 connect", "pop3 login failed", `msg="pop3 login"`, "retrieved=1 deleted=1", "pop3 disconnect"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(line, " conn=") {
			t.Errorf("log line without conn id: %s", line)
		}
	}
}

// TestServeConn drives a session over a connection accepted elsewhere.
func TestServeConn(t *testing.T) {
	b := newFakeBackend()
	srv := &Server{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l := testsupport.Listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, err := l.Accept()
		if err != nil {
			return
		}
		srv.ServeConn(sc)
	}()
	c := testsupport.Dial(t, l.Addr().String())
	c.POP3Login("user", "pass")
	c.SendLines("QUIT")
	c.Expect("+OK bye")
	<-done
}

// TestHostileInput: control characters never reach the backend, and a
// command split into 1-octet writes is still one command.
func TestHostileInput(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	_, addr := newTestServer(t, b, func(s *Server) { s.MaxErrors = 100 })
	c := testsupport.Dial(t, addr)
	c.Expect("+OK*")
	for _, l := range []string{"USER us\x00er", "USER user\r", "\x00", "US\rER x", "USER\ttab", "\xff\xfe", "ÜSER x", "USERX y"} {
		c.SendLines(l)
		c.Expect("-ERR *")
	}
	for _, ch := range []byte("USER user\r\nPASS pass\r\n") {
		if _, err := c.Write([]byte{ch}); err != nil {
			t.Fatal(err)
		}
	}
	c.Expect("+OK*", "+OK maildrop locked*")
	// Bare LF ends a command too (lenient, like Dovecot).
	if _, err := io.WriteString(c, "STAT\n"); err != nil {
		t.Fatal(err)
	}
	c.Expect("+OK 1 *")
	if b.loginCount() != 1 {
		t.Fatalf("backend saw %d logins", b.loginCount())
	}
}

// TestPythonPoplib drives the server with Python's poplib, an independent
// client implementation.
func TestPythonPoplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	b := newFakeBackend()
	b.add("user", msg1, ".leading dot\r\n..two\r\n")
	_, addr := newTestServer(t, b)
	host, port, _ := net.SplitHostPort(addr)
	script := `
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
print(p.getwelcome().decode())
print(sorted(p.capa().keys()))
p.user("user"); p.pass_("pass")
print(p.stat())
print(p.uidl()[1])
print(p.retr(2)[1])
print(p.top(1, 0)[1])
p.dele(1)
print(p.quit().decode())
`
	cmd := exec.Command(py, "-c", script, host, port)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	want := fmt.Sprintf(`+OK Postoffice POP3 ready
['AUTH-RESP-CODE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'SASL', 'TOP', 'UIDL', 'USER']
(2, %d)
[b'1 uid-user-1', b'2 uid-user-2']
[b'.leading dot', b'..two']
[b'From: alice@example.com', b'To: user@example.com', b'Subject: one', b'']
+OK bye
`, len(msg1)+len(".leading dot\r\n..two\r\n"))
	if string(out) != want {
		t.Fatalf("poplib output:\n%s\nwant:\n%s", out, want)
	}
	d := b.lastDrop(t)
	d.waitClosed(t)
	if got := d.commitCalls(); !reflect.DeepEqual(got, [][]int{{0}}) {
		t.Fatalf("Commit calls %v", got)
	}
}

// TestShutdownLetsRetrFinish: a RETR under way when Shutdown starts is sent
// in full before the session is told the server is going away.
func TestShutdownLetsRetrFinish(t *testing.T) {
	b := newFakeBackend()
	b.add("user", msg1)
	g := newGate()
	l := testsupport.Listen(t)
	srv := &Server{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go srv.Serve(l)
	c := testsupport.Dial(t, l.Addr().String())
	c.POP3Login("user", "pass")
	b.set(func(b *fakeBackend) { b.gate = g })
	c.SendLines("RETR 1")
	select { // the session is now inside RETR, waiting on the gate
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("RETR never started reading the message")
	}

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a RETR was under way", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(g.release)
	c.Expect("+OK * octets")
	var body []string
	for l := c.Line(); l != "."; l = c.Line() {
		body = append(body, l)
	}
	if got := strings.Join(body, "\r\n") + "\r\n"; got != msg1 {
		t.Fatalf("RETR during shutdown sent %q", got)
	}
	c.Expect("-ERR [SYS/TEMP] server shutting down")
	c.ExpectClosed()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	b.lastDrop(t).waitClosed(t)
}
