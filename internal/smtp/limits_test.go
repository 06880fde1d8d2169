package smtp

import (
	"strings"
	"testing"

	"postoffice/internal/testsupport"
)

// pathOf returns a path "<local@domain>" of exactly n octets with a local
// part of local octets.
func pathOf(n, local int) string {
	domain := n - local - 3 // "<", "@", ">"
	d := strings.Repeat("d", domain-4) + ".com"
	return "<" + strings.Repeat("a", local) + "@" + d + ">"
}

// TestPathLengthLimit: a reverse-path or forward-path over 256 octets gets
// 501 5.1.3 (RFC 5321 §4.5.3.1.3); 256 octets pass, a local part over 64
// octets within that bound too (§4.5.3.1: accept longer objects where
// possible), and the session goes on.
func TestPathLengthLimit(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<"+strings.Repeat("a", 2000)+"@example.com>", "501 5.1.3 Error: path too long (256 octets at most)")
	c.Cmd("MAIL FROM:"+pathOf(257, 10), "501 5.1.3 *")
	c.Cmd("MAIL FROM:<@"+strings.Repeat("r", 250)+".com:a@b.com>", "501 5.1.3 *") // the source route counts
	if calls := be.mailCalls(); len(calls) != 0 {
		t.Fatalf("MAIL reached the backend: %d calls", len(calls))
	}
	c.Cmd("MAIL FROM:"+pathOf(256, 10)+" SIZE=10", "250 2.1.0 Ok")
	c.Cmd("RCPT TO:<"+strings.Repeat("b", 2000)+"@example.com>", "501 5.1.3 Error: path too long (256 octets at most)")
	c.Cmd("RCPT TO:"+pathOf(257, 64), "501 5.1.3 *")
	c.Cmd("RCPT TO:"+pathOf(256, 64), "250 2.1.5 Ok")
	long := pathOf(200, 120) // local part over 64 octets
	c.Cmd("RCPT TO:"+long, "250 2.1.5 Ok")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "250 *")
	to := be.messages()[0].env.To
	if len(to) != 2 || len(to[0]) != 254 || "<"+to[1]+">" != long {
		t.Fatalf("recipients %q", to)
	}
}
