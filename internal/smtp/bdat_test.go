package smtp

import (
	"errors"
	"io"
	"strings"
	"testing"

	"postoffice/internal/testsupport"
)

func bdatSession(t *testing.T, srv *Server) *testsupport.Conn {
	t.Helper()
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b> BODY=BINARYMIME", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	return c
}

func TestBDAT(t *testing.T) {
	be := newBackend()
	c := bdatSession(t, testServer(t, be))
	// Exact octets: no dot handling, no line end normalization.
	c.Send("BDAT 9\r\n.\r\nab\nc\r\n")
	c.ExpectReply("250 2.0.0 9 octets received")
	c.Send("BDAT 7\r\n\x00.\r\n.\r\n")
	c.ExpectReply("250 2.0.0 7 octets received")
	c.Send("BDAT 0 LAST\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	m := be.messages()[0]
	if m.data != ".\r\nab\nc\r\n\x00.\r\n.\r\n" {
		t.Fatalf("stored %q", m.data)
	}
	if !m.env.Chunked || m.env.Body != "BINARYMIME" {
		t.Fatalf("envelope %+v", m.env)
	}
	// DATA is refused for a BINARYMIME transaction (RFC 3030 §3).
	c.Cmd("MAIL FROM:<a@b> BODY=BINARYMIME", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "503 5.5.1 *")
	c.Send("BDAT 3 last\r\nabc")
	c.ExpectReply("250 2.0.0 Ok: queued as Q2")
	if got := be.messages()[1].data; got != "abc\r\n" {
		t.Fatalf("CRLF not appended: %q", got)
	}
}

func TestBDATZeroLast(t *testing.T) {
	be := newBackend()
	c := bdatSession(t, testServer(t, be))
	c.Cmd("BDAT 0 LAST", "250 2.0.0 Ok: queued as Q1")
	if m := be.messages(); len(m) != 1 || m[0].data != "" {
		t.Fatalf("messages %+v", m)
	}
}

func TestBDATSequence(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	// Out of sequence: the chunk is read and discarded, then 503.
	c.Send("BDAT 4\r\nRSETBDAT 2 LAST\r\nxx")
	c.ExpectReply("503 5.5.1 Error: need RCPT command")
	c.ExpectReply("503 5.5.1 Error: need RCPT command")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Send("BDAT 1\r\nx")
	c.ExpectReply("503 5.5.1 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 3\r\nabc")
	c.ExpectReply("250 2.0.0 3 octets received")
	c.Cmd("DATA", "503 5.5.1 Error: DATA after BDAT")
	c.Cmd("RCPT TO:<z@y>", "503 5.5.1 Error: RCPT after BDAT")
	c.Send("BDAT 2 LAST\r\nde")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	if m := be.messages(); len(m) != 1 || m[0].data != "abcde\r\n" || len(m[0].env.To) != 1 {
		t.Fatalf("messages %+v", m)
	}
	// RSET in the middle of a chunked message abandons it.
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 3\r\nabc")
	c.ExpectReply("250 2.0.0 3 octets received")
	c.Cmd("RSET", "250 2.0.0 Ok")
	if n := len(be.messages()); n != 1 {
		t.Fatalf("%d messages after RSET", n)
	}
	if errs := be.errs(); len(errs) != 1 || !errors.Is(errs[0], errTransactionAborted) {
		t.Fatalf("backend errors %v", errs)
	}
}

func TestBDATBadArgument(t *testing.T) {
	for _, arg := range []string{"BDAT", "BDAT x", "BDAT -1", "BDAT +1", "BDAT 1 MORE", "BDAT 1 LAST x", "BDAT 0x10"} {
		t.Run(arg, func(t *testing.T) {
			c := bdatSession(t, testServer(t, newBackend()))
			c.Send(arg + "\r\n")
			c.ExpectReply("501 5.5.4 Syntax: BDAT size [LAST]")
			c.ExpectReply("421 4.5.4 mx.test * closing connection (conn *)")
			c.ExpectClosed()
		})
	}
}

// TestBDATOversize: a chunk that takes the message over the limit gets
// 552, nothing is stored, the chunks already pipelined are discarded, and
// the session goes on.
func TestBDATOversize(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srv.MaxMessageBytes = 100
	srv.MaxErrors = 2
	c := bdatSession(t, srv)
	c.Send("BDAT 60\r\n" + strings.Repeat("a", 60) +
		"BDAT 60\r\n" + strings.Repeat("b", 60) +
		"BDAT 50\r\n" + strings.Repeat("c", 50) +
		"BDAT 50\r\n" + strings.Repeat("d", 50) +
		"BDAT 10 LAST\r\n" + strings.Repeat("e", 10))
	c.ExpectReply("250 2.0.0 60 octets received")
	c.ExpectReply("552 5.3.4 Message size exceeds fixed limit")
	c.ExpectReply("503 5.5.1 Error: transaction failed, send RSET")
	c.ExpectReply("503 5.5.1 Error: transaction failed, send RSET")
	c.ExpectReply("503 5.5.1 Error: transaction failed, send RSET")
	if n := len(be.messages()); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	if errs := be.errs(); len(errs) != 1 || !errors.Is(errs[0], ErrMessageTooBig) {
		t.Fatalf("backend errors %v", errs)
	}
	// Still usable; the discarded chunks did not count as errors.
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 100 LAST\r\n" + strings.Repeat("f", 100))
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	// A single chunk over the whole limit cannot be drained: 552, 421.
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 101\r\n")
	c.ExpectReply("552 5.3.4 *")
	c.ExpectReply("421 4.3.4 * Chunk too large*")
	c.ExpectClosed()
}

func TestBDATBackendFailsEarly(t *testing.T) {
	be := newBackend()
	be.readHook = func(r io.Reader) (string, error) {
		return "", &Error{Code: 554, Enhanced: "5.6.0", Message: "rejected"}
	}
	c := bdatSession(t, testServer(t, be))
	c.Send("BDAT 5\r\nabcdeBDAT 5 LAST\r\nfghij")
	c.ExpectReply("554 5.6.0 rejected")
	c.ExpectReply("503 5.5.1 Error: transaction failed, send RSET")
	c.Cmd("NOOP", "250 *")
}

// A BDAT message whose last line ended in a bare LF used to get CRLF
// appended after that LF, which the store turned into an extra empty line
// at the end of the message.
func TestBDATFinalBareLFGetsNoExtraLine(t *testing.T) {
	be := newBackend()
	c := bdatSession(t, testServer(t, be))
	c.Send("BDAT 7 LAST\r\nab\nc\nd\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	if got := be.messages()[0].data; got != "ab\nc\nd\n" {
		t.Fatalf("stored %q, want the octets as sent", got)
	}
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 2 LAST\r\nab")
	c.ExpectReply("250 2.0.0 Ok: queued as Q2")
	if got := be.messages()[1].data; got != "ab\r\n" {
		t.Fatalf("stored %q, want CRLF appended", got)
	}
}
