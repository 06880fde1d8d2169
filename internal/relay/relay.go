// Package relay is the client side of releasing a stored message (POST
// /api/v1/mailboxes/{mailbox}/messages/{id}/release): it hands the message
// to another SMTP server with the emersion/go-smtp client, STARTTLS when
// the server offers it, a deadline on every step, and the far server's
// replies kept verbatim for the caller. Policy decides which recipients
// and targets are allowed.
package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// DefaultTimeout is the deadline of each step when Client.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Client sends messages to SMTP servers. Its zero value works; it is safe
// for concurrent use.
type Client struct {
	// Hostname is the name sent in EHLO (--hostname); "" sends
	// "localhost".
	Hostname string
	// Timeout bounds every step: the connection, the greeting, each
	// command's reply, each write of message data, the TLS handshake and
	// the reply after the data. 0 means DefaultTimeout.
	Timeout time.Duration
	// InsecureTLS skips the verification of the far server's certificate
	// in STARTTLS (--relay-insecure-tls). By default it must be valid
	// for the target's host name.
	InsecureTLS bool
	// RootCAs verifies the far server's certificate; nil means the
	// system's roots.
	RootCAs *x509.CertPool
}

// Message is one release: the envelope and the data.
type Message struct {
	From string   // reverse-path without brackets; "" for <>
	To   []string // forward-paths without brackets
	// Size is the length of Body, announced with SIZE (RFC 1870) when
	// the server offers it; 0 announces nothing.
	Size int64
	// EightBit: Body holds octets above 0x7F, so the server must offer
	// 8BITMIME (RFC 6152 §3) or the release is refused before MAIL.
	EightBit bool
	// UTF8: the addresses or the header hold UTF-8, so the server must
	// offer SMTPUTF8 (RFC 6531 §3.4) or the release is refused.
	UTF8 bool
	// Body is the message, header and body, as it is to be delivered;
	// the client dot-stuffs it.
	Body io.Reader
}

// Result is a successful release.
type Result struct {
	// TLS is the protocol version of the STARTTLS session ("TLSv1.3"),
	// "" when the server offered no STARTTLS and the message went in the
	// clear.
	TLS string
	// Reply is the far server's reply text to the end of the data
	// ("2.0.0 Ok: queued as ..."), as it sent it.
	Reply string
}

// Reply is a reply of the far server.
type Reply struct {
	Code     int    `json:"code"`
	Enhanced string `json:"enhanced,omitempty"` // RFC 3463 code, "" when it sent none
	Message  string `json:"message"`            // its text, lines joined by "\n"
}

// Error is a failed release. Stage is the step: "connect" (dial and
// greeting), "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA". Reply is the far
// server's refusal, verbatim, or nil when the step failed otherwise (the
// dial, a timeout, TLS, a lost connection, a missing extension): then Err
// says why.
type Error struct {
	Stage     string
	Recipient string // the refused recipient at RCPT
	Reply     *Reply
	Err       error
}

func (e *Error) Error() string {
	s := e.Stage
	if e.Recipient != "" {
		s += " <" + e.Recipient + ">"
	}
	if e.Reply != nil {
		r := strconv.Itoa(e.Reply.Code)
		if e.Reply.Enhanced != "" {
			r += " " + e.Reply.Enhanced
		}
		return s + ": " + r + " " + e.Reply.Message
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) hostname() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	return "localhost"
}

// Send delivers m to the SMTP server at addr (host:port): greeting, EHLO
// with Hostname, STARTTLS when offered (then EHLO again, RFC 3207 §4.2),
// MAIL, one RCPT per recipient, DATA, QUIT. Any refusal aborts the whole
// release before DATA (QUIT, nothing sent). Errors are *Error. ctx ends
// the connection when it is done.
func (c *Client) Send(ctx context.Context, addr string, m Message) (Result, error) {
	var res Result
	timeout := c.timeout()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return res, &Error{Stage: "connect", Err: err}
	}
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, &Error{Stage: "connect", Err: err}
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	conn := &writeDeadlineConn{Conn: raw, timeout: timeout}
	defer conn.Close()

	nc, version, err := c.negotiate(ctx, conn, host)
	if err != nil {
		return res, err
	}
	res.TLS = version
	sc := gosmtp.NewClient(nc)
	sc.CommandTimeout, sc.SubmissionTimeout = timeout, timeout
	defer sc.Close()
	if err := sc.Hello(c.hostname()); err != nil {
		return res, stepError("EHLO", "", err)
	}
	fail := func(e *Error) (Result, error) {
		sc.Quit() // best effort; the reply does not matter
		return res, e
	}
	// RFC 6152 §3: 8-bit data only to a server that offers 8BITMIME (the
	// client adds BODY=8BITMIME whenever it does).
	if ok, _ := sc.Extension("8BITMIME"); m.EightBit && !ok {
		return fail(&Error{Stage: "MAIL", Err: errors.New("the server does not offer 8BITMIME, which this message's 8-bit data needs (RFC 6152 §3)")})
	}
	// RFC 6531 §3.4: UTF-8 addresses or header only with SMTPUTF8.
	if ok, _ := sc.Extension("SMTPUTF8"); m.UTF8 && !ok {
		return fail(&Error{Stage: "MAIL", Err: errors.New("the server does not offer SMTPUTF8, which this message's UTF-8 addresses or header need (RFC 6531 §3.4)")})
	}
	if err := sc.Mail(m.From, &gosmtp.MailOptions{Size: m.Size, UTF8: m.UTF8}); err != nil {
		return fail(stepError("MAIL", "", err))
	}
	for _, to := range m.To {
		if err := sc.Rcpt(to, nil); err != nil {
			return fail(stepError("RCPT", to, err))
		}
	}
	w, err := sc.Data()
	if err != nil {
		return fail(stepError("DATA", "", err))
	}
	if _, err := io.Copy(w, m.Body); err != nil {
		return res, &Error{Stage: "DATA", Err: err}
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail(stepError("DATA", "", err))
	}
	res.Reply = resp.StatusText
	sc.Quit()
	return res, nil
}

// stepError wraps an error of the go-smtp client: the server's reply
// verbatim when there is one.
func stepError(stage, rcpt string, err error) *Error {
	e := &Error{Stage: stage, Recipient: rcpt, Err: err}
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		e.Reply = &Reply{Code: se.Code, Message: se.Message}
		if ec := se.EnhancedCode; ec != gosmtp.EnhancedCodeNotSet && ec != gosmtp.NoEnhancedCode {
			e.Reply.Enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		}
	}
	return e
}

// negotiate reads the greeting, sends EHLO with our host name and, when
// the server offers STARTTLS, starts TLS. It returns the connection for
// the go-smtp client, which begins by reading a greeting: the server's
// own greeting is replayed to it. The go-smtp client cannot send its first
// EHLO with our name before STARTTLS (it says "localhost"), hence this
// step of our own; the client's EHLO that follows is the second one, which
// RFC 3207 §4.2 requires after STARTTLS and RFC 5321 §4.1.4 allows
// without.
func (c *Client) negotiate(ctx context.Context, conn net.Conn, host string) (net.Conn, string, error) {
	timeout := c.timeout()
	br := bufio.NewReaderSize(conn, 4096)
	conn.SetReadDeadline(time.Now().Add(timeout))
	greeting, raw, err := readReply(br)
	if err != nil {
		return nil, "", &Error{Stage: "connect", Err: err}
	}
	if greeting.Code != 220 {
		return nil, "", &Error{Stage: "connect", Reply: greeting, Err: errors.New("refused at greeting")}
	}
	ehlo, err := command(conn, br, timeout, "EHLO "+c.hostname())
	if err != nil {
		return nil, "", &Error{Stage: "EHLO", Err: err}
	}
	if ehlo.Code != 250 || !hasExtension(ehlo, "STARTTLS") {
		// In the clear: go-smtp greets again (EHLO, or HELO after a 5xx).
		pre := append(raw, peekAll(br)...)
		return &replayConn{Conn: conn, pre: pre}, "", nil
	}
	st, err := command(conn, br, timeout, "STARTTLS")
	if err != nil {
		return nil, "", &Error{Stage: "STARTTLS", Err: err}
	}
	if st.Code != 220 {
		return nil, "", &Error{Stage: "STARTTLS", Reply: st, Err: errors.New("refused")}
	}
	if br.Buffered() > 0 {
		// Anything before the handshake would be read as if it came over
		// TLS: a response injection. Give up.
		return nil, "", &Error{Stage: "STARTTLS", Err: errors.New("the server sent data after its 220 to STARTTLS, before TLS began")}
	}
	cfg := &tls.Config{ServerName: host, RootCAs: c.RootCAs, InsecureSkipVerify: c.InsecureTLS, MinVersion: tls.VersionTLS12}
	tc := tls.Client(conn, cfg)
	conn.SetDeadline(time.Now().Add(timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, "", &Error{Stage: "STARTTLS", Err: err}
	}
	conn.SetDeadline(time.Time{})
	return &replayConn{Conn: tc, pre: raw}, tlsVersion(tc.ConnectionState().Version), nil
}

// command sends line and reads the reply, each within timeout.
func command(conn net.Conn, br *bufio.Reader, timeout time.Duration, line string) (*Reply, error) {
	if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	r, _, err := readReply(br)
	return r, err
}

// Bounds of a reply read by readReply: RFC 5321 §4.5.3.1.5 allows 512
// octets a line; a server's EHLO lists a few dozen lines.
const (
	maxReplyLine  = 2000
	maxReplyLines = 100
)

// readReply reads one (multi-line) reply and returns it with its raw
// octets.
func readReply(br *bufio.Reader) (*Reply, []byte, error) {
	var raw []byte
	var lines []string
	code := 0
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return nil, nil, errors.New("reply of too many lines")
		}
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(line) > maxReplyLine {
			return nil, nil, errors.New("reply line too long")
		}
		if err != nil {
			return nil, nil, err
		}
		raw = append(raw, line...)
		text := strings.TrimRight(string(line), "\r\n")
		if len(text) < 3 {
			return nil, nil, fmt.Errorf("malformed reply %q", text)
		}
		c, err := strconv.Atoi(text[:3])
		if err != nil || c < 200 || c > 599 || code != 0 && c != code || len(text) > 3 && text[3] != ' ' && text[3] != '-' {
			return nil, nil, fmt.Errorf("malformed reply %q", text)
		}
		code = c
		if len(text) > 4 {
			lines = append(lines, text[4:])
		} else {
			lines = append(lines, "")
		}
		if len(text) == 3 || text[3] == ' ' {
			break
		}
	}
	return &Reply{Code: code, Message: strings.Join(lines, "\n")}, raw, nil
}

// hasExtension reports whether an EHLO reply lists keyword (RFC 5321
// §4.1.1.1: the lines after the first, keyword first).
func hasExtension(r *Reply, keyword string) bool {
	lines := strings.Split(r.Message, "\n")
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], keyword) {
			return true
		}
	}
	return false
}

// peekAll returns (and consumes) what br holds already.
func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	out := append([]byte(nil), b...)
	br.Discard(len(out))
	return out
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS 0x%04x", v)
}

// replayConn reads pre before the connection.
type replayConn struct {
	net.Conn
	pre []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// writeDeadlineConn gives every write a deadline of its own: the go-smtp
// client sets deadlines for its commands' replies but none while it writes
// the message data.
type writeDeadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}
