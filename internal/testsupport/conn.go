package testsupport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Conn is a line-protocol client for transcript tests: it sends what the
// test writes and reads lines, SMTP replies and POP3 multi-line responses,
// each read and write within Timeout.
//
// The methods that check what arrived (Expect, ExpectReply, Cmd, Line,
// Multiline, ExpectClosed, ...) fail the test, so they belong to the test's
// goroutine; ReadLine and ReadReply only return errors and may be called
// from any goroutine.
//
// Conn embeds the connection for what a test does to it directly: Write
// one octet at a time, Close, SetReadDeadline, RemoteAddr. Reading goes
// through R, the buffered reader of everything received; Conn's Read reads
// from R too, so that nothing is read past it.
type Conn struct {
	net.Conn
	R *bufio.Reader

	// ConnID makes ExpectReply hold Postoffice's SMTP server to what it
	// promises: the last line of every 4xx and 5xx reply ends in
	// " (conn ID)". A pattern that does not mention "(conn " itself is then
	// matched against the line without that suffix.
	ConnID bool

	t       testing.TB
	imapTag int // the last tag IMAP used
}

// readerSize is the buffer of Conn.R: a whole pipelined group of replies.
const readerSize = 64 << 10

// Dial connects to addr over TCP, failing the test if it cannot. The
// connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return NewConn(t, nc)
}

// DialTLS connects to addr over TLS with cfg (implicit TLS: SMTPS, POP3S),
// the handshake included, failing the test if it cannot. The connection is
// closed when the test ends.
func DialTLS(t testing.TB, addr string, cfg *tls.Config) *Conn {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: Timeout}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial %s over TLS: %v", addr, err)
	}
	return NewConn(t, nc)
}

// NewConn is a Conn over nc, which is closed when the test ends.
func NewConn(t testing.TB, nc net.Conn) *Conn {
	t.Cleanup(func() { nc.Close() })
	return &Conn{Conn: nc, R: bufio.NewReaderSize(nc, readerSize), t: t}
}

// Read reads from R, the buffered reader of the connection.
func (c *Conn) Read(p []byte) (int, error) { return c.R.Read(p) }

// Send writes s as it is, in one write.
func (c *Conn) Send(s string) {
	c.t.Helper()
	c.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("send %.100q: %v", s, err)
	}
}

// SendLines writes each line with CRLF after it, all in one write: a
// pipelined group of commands.
func (c *Conn) SendLines(lines ...string) {
	c.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	c.Send(b.String())
}

// ReadLine reads one line and returns it without its CRLF. A line that
// ends otherwise (a bare LF, or the connection's end) is an error; what
// arrived of it is returned with the error.
func (c *Conn) ReadLine() (string, error) {
	c.SetReadDeadline(time.Now().Add(Timeout))
	l, err := c.R.ReadString('\n')
	if err != nil {
		return l, err
	}
	l, ok := strings.CutSuffix(l, "\r\n")
	if !ok {
		return l, fmt.Errorf("line %q does not end in CRLF", l)
	}
	return l, nil
}

// Line reads one line as ReadLine does and fails the test on an error.
func (c *Conn) Line() string {
	c.t.Helper()
	l, err := c.ReadLine()
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return l
}

// Expect reads one line for each pattern and matches it against the glob
// pattern (see Glob), failing the test with the line that arrived where one
// does not match. It returns the last line read.
func (c *Conn) Expect(patterns ...string) string {
	c.t.Helper()
	var l string
	for _, p := range patterns {
		l = c.Line()
		if !Glob(p, l) {
			c.t.Fatalf("got %q, want %q", l, p)
		}
	}
	return l
}

// Reply is an SMTP reply: its lines without CRLF, "NNN-text" but the last,
// "NNN text" (RFC 5321 §4.2.1).
type Reply []string

// Last returns the last line of r, the one that ends the reply ("" for an
// empty r).
func (r Reply) Last() string {
	if len(r) == 0 {
		return ""
	}
	return r[len(r)-1]
}

// ReadReply reads one SMTP reply, all its lines. On an error it returns the
// lines read before it.
func (c *Conn) ReadReply() (Reply, error) {
	var r Reply
	for {
		l, err := c.ReadLine()
		if err != nil {
			return r, err
		}
		r = append(r, l)
		if len(l) < 4 || l[3] != '-' {
			return r, nil
		}
	}
}

// connSuffix is how Postoffice's SMTP server names the connection at the
// end of an error reply.
var connSuffix = regexp.MustCompile(` \(conn [0-9A-Z]+\)$`)

// ExpectReply reads one SMTP reply and matches its last line against the
// glob pattern (see Glob and ConnID), failing the test with the reply that
// arrived if it does not match. It returns the reply.
func (c *Conn) ExpectReply(pattern string) Reply {
	c.t.Helper()
	r, err := c.ReadReply()
	if err != nil {
		c.t.Fatalf("want %q, read error %v after %q", pattern, err, r)
	}
	last := r.Last()
	if c.ConnID && last != "" && last[0] >= '4' && last[0] <= '5' {
		if !strings.Contains(last, "(conn ") {
			c.t.Fatalf("error reply without the connection id: %q", last)
		}
		if m := connSuffix.FindStringIndex(last); m != nil && !strings.Contains(pattern, "(conn ") {
			last = last[:m[0]]
		}
	}
	if !Glob(pattern, last) {
		c.t.Fatalf("want %q, got %q", pattern, r)
	}
	return r
}

// Cmd sends one command line (CRLF added) and expects a reply matching
// pattern, as ExpectReply does: an SMTP reply, or a POP3 status line ("+OK
// ...", "-ERR ..."), which is a reply of one line to ReadReply.
func (c *Conn) Cmd(line, pattern string) Reply {
	c.t.Helper()
	c.Send(line + "\r\n")
	return c.ExpectReply(pattern)
}

// Multiline reads the rest of a POP3 multi-line response, up to the line
// "." that ends it, and returns its lines without CRLF, the dot-stuffing
// undone (RFC 1939 §3: a line that begins with "." was sent with one more).
func (c *Conn) Multiline() []string {
	c.t.Helper()
	var body []string
	for {
		l := c.Line()
		if l == "." {
			return body
		}
		body = append(body, strings.TrimPrefix(l, "."))
	}
}

// MultilineText is Multiline as text, each line with its CRLF: what was
// dot-stuffed into the response, a message for RETR.
func (c *Conn) MultilineText() string {
	c.t.Helper()
	var b strings.Builder
	for _, l := range c.Multiline() {
		b.WriteString(l + "\r\n")
	}
	return b.String()
}

// ExpectMulti expects the status line of a POP3 multi-line response to
// match first, and returns the response's body as Multiline does.
func (c *Conn) ExpectMulti(first string) []string {
	c.t.Helper()
	c.Expect(first)
	return c.Multiline()
}

// POP3Login reads the greeting of Postoffice's POP3 server and logs in with
// USER and PASS, sent in one write (RFC 2449 PIPELINING).
func (c *Conn) POP3Login(user, pass string) {
	c.t.Helper()
	c.Expect("+OK Postoffice POP3 ready")
	c.SendLines("USER "+user, "PASS "+pass)
	c.Expect("+OK*", "+OK maildrop locked and ready*")
}

// StartTLS runs the client side of a TLS handshake on the connection after
// the server agreed to STARTTLS (SMTP) or STLS (POP3), and goes on over TLS;
// it fails the test if the handshake fails or if anything arrived after
// the server's agreement (RFC 3207 §4.2, RFC 2595 §4: nothing may be
// sent in plaintext then). It returns the TLS connection, for its state.
func (c *Conn) StartTLS(cfg *tls.Config) *tls.Conn {
	c.t.Helper()
	if n := c.R.Buffered(); n != 0 {
		c.t.Fatalf("%d octets arrived in plaintext after the server agreed to TLS", n)
	}
	tc := tls.Client(c.Conn, cfg)
	tc.SetDeadline(time.Now().Add(Timeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.Conn, c.R = tc, bufio.NewReaderSize(tc, readerSize)
	return tc
}

// ExpectClosed checks that the server closes the connection with nothing
// more to say: the next read ends, at the end of the stream or in a reset,
// before any octet arrives.
func (c *Conn) ExpectClosed() {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(Timeout))
	b, err := c.R.ReadString('\n')
	if err == nil || b != "" || !(errors.Is(err, io.EOF) || IsReset(err)) {
		c.t.Fatalf("want the connection closed, got %q, %v", b, err)
	}
}

// IsReset reports whether err says that the peer reset the connection or
// that it broke under a write (ECONNRESET, EPIPE): how a server's close
// looks to a client that still had something in flight.
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		err != nil && strings.Contains(err.Error(), "connection reset")
}

// Exchange connects to addr, sends in and then the end of its stream (a
// TCP half-close), and reads everything the server sends until it closes
// the connection, all within Timeout: a whole session in one go, for
// fuzzing. Sending runs in its own goroutine, so that a server that answers
// before it has read everything cannot stall it. Exchange returns what
// arrived and the error that ended reading (nil at the end of the stream).
func Exchange(t testing.TB, addr string, in []byte) ([]byte, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(Timeout))
	go func() {
		nc.Write(in)
		nc.(*net.TCPConn).CloseWrite()
	}()
	return io.ReadAll(nc)
}
