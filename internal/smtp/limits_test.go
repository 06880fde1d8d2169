package smtp

import (
	"errors"
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

// TestMailWithoutHelo: MAIL before HELO/EHLO is accepted by default, as
// Postfix does (smtpd_helo_required = no); the transaction runs with no
// HELO name and no service extensions (RFC 5321 §4.1.1.1).
func TestMailWithoutHelo(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("MAIL FROM:<a@b> SIZE=10", "555 5.5.4 Parameters not supported without EHLO")
	c.Cmd("MAIL FROM:<a@b>", "250 2.1.0 Ok")
	c.Cmd("RCPT TO:<x@y>", "250 2.1.5 Ok")
	c.Cmd("DATA", "354 *")
	c.Cmd("hi\r\n.", "250 2.0.0 Ok: queued as Q1")
	m := be.messages()[0]
	if m.env.Helo != "" || m.env.ESMTP || m.env.From != "a@b" || m.data != "hi\r\n" {
		t.Fatalf("envelope %+v data %q", m.env, m.data)
	}
}

// TestRequireHelo: with RequireHelo, MAIL before HELO/EHLO is a bad
// sequence (RFC 5321 §4.1.4), also after STARTTLS resets the session.
func TestRequireHelo(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.RequireHelo = true
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("MAIL FROM:<a@b>", "503 5.5.1 Error: send HELO/EHLO first")
	c.Cmd("HELO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 2.1.0 Ok")
}

// TestJunkCommandLimit: NOOP, RSET, VRFY and HELP beyond MaxJunkCommands
// get 421 4.7.0 and the connection closes; a delivered message resets the
// count, a failed one does not (Postfix's smtpd_junk_command_limit).
func TestJunkCommandLimit(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srv.MaxJunkCommands = 3
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("NOOP", "250 2.0.0 Ok")
	c.Cmd("VRFY x", "252 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "250 2.0.0 Ok: queued as Q1") // resets the count
	c.Cmd("RSET", "250 2.0.0 Ok")
	c.Cmd("HELP", "214 *")
	c.Cmd("NOOP", "250 2.0.0 Ok")
	be.mu.Lock()
	be.dataErr = errors.New("disk on fire")
	be.mu.Unlock()
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "451 4.3.0 *") // not delivered: no reset
	c.Cmd("RSET", "421 4.7.0 mx.test Too many junk commands, closing connection (conn *)")
	c.ExpectClosed()
}

// TestJunkCommandLimitDefault: 100 junk commands pass by default, the
// 101st is refused; pipelined, they are answered in order.
func TestJunkCommandLimitDefault(t *testing.T) {
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, newBackend()), ErrServerClosed))
	c.Send(strings.Repeat("NOOP\r\n", 100) + "NOOP\r\nNOOP\r\n")
	for range 100 {
		c.ExpectReply("250 2.0.0 Ok")
	}
	c.ExpectReply("421 4.7.0 * Too many junk commands, closing connection (conn *)")
	c.ExpectClosed()
}

// TestJunkCommandNoLimit: a negative MaxJunkCommands sets no limit.
func TestJunkCommandNoLimit(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.MaxJunkCommands = -1
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Send(strings.Repeat("RSET\r\n", 300))
	for range 300 {
		c.ExpectReply("250 2.0.0 Ok")
	}
	c.Cmd("NOOP", "250 2.0.0 Ok")
}
