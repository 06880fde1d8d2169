package smtp

import (
	"bufio"
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"

	"postoffice/internal/netpolicy"
)

// upgrade runs the client side of STARTTLS on c and returns a client over
// TLS.
func upgrade(t *testing.T, c *client, cfg *tls.Config) *client {
	t.Helper()
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	return &client{t: t, conn: tc, r: bufio.NewReader(tc)}
}

func TestStartTLS(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srvCfg, cliCfg := selfSigned(t)
	srv.TLSConfig = srvCfg
	srv.IsLocal = notLocal
	c := dialGreeted(t, start(t, srv))
	lines := c.cmd("EHLO c", "250 STARTTLS")
	if slices.Contains(lines, "250-AUTH PLAIN LOGIN") {
		t.Fatal("AUTH offered before TLS to a non-local client")
	}
	c.cmd("STARTTLS now", "501 5.5.4 *")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	tc := upgrade(t, c, cliCfg)
	// RFC 3207 §4.2: the session starts over.
	tc.cmd("MAIL FROM:<a@b>", "503 5.5.1 Error: send HELO/EHLO first")
	lines = tc.cmd("EHLO c", "250 AUTH PLAIN LOGIN")
	if slices.Contains(lines, "250-STARTTLS") {
		t.Fatal("STARTTLS offered again over TLS")
	}
	tc.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	tc.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 *")
	tc.cmd("MAIL FROM:<a@b>", "250 *")
	tc.cmd("RCPT TO:<x@y>", "250 *")
	tc.cmd("DATA", "354 *")
	tc.cmd("secret\r\n.", "250 *")
	m := be.messages()[0]
	if m.env.TLS == nil || m.env.TLS.Version < tls.VersionTLS12 || m.env.AuthUser != "user" || m.data != "secret\r\n" {
		t.Fatalf("envelope %+v data %q", m.env, m.data)
	}
}

// TestStartTLSDiscardsPipelinedPlaintext: commands pipelined in plaintext
// after STARTTLS must not be executed (RFC 3207 §4.2, CVE-2011-0411).
func TestStartTLSDiscardsPipelinedPlaintext(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srvCfg, cliCfg := selfSigned(t)
	srv.TLSConfig = srvCfg
	c := dialGreeted(t, start(t, srv))
	c.cmd("EHLO c", "250 *")
	c.send("STARTTLS\r\nMAIL FROM:<injected@evil>\r\n")
	expect(t, c, "220 2.0.0 Ready to start TLS")
	tc := upgrade(t, c, cliCfg)
	tc.cmd("EHLO c", "250 *")
	tc.cmd("RCPT TO:<x@y>", "503 5.5.1 Error: need MAIL command")
	if calls := be.mailCalls(); len(calls) != 0 {
		t.Fatalf("plaintext MAIL executed: %q", calls)
	}
}

func TestStartTLSHandshakeFailure(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.TLSConfig, _ = selfSigned(t)
	c := dialGreeted(t, start(t, srv))
	c.cmd("STARTTLS", "220 *")
	c.send("this is not a TLS client hello\r\n\r\n\r\n")
	expectClosed(t, c)
}

func TestImplicitTLS(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srvCfg, cliCfg := selfSigned(t)
	srv.IsLocal = notLocal
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(l, srvCfg))
	t.Cleanup(func() { shutdown(t, srv) })

	conn, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	expect(t, c, "220 mx.test ESMTP Postoffice ready")
	lines := c.cmd("EHLO c", "250 AUTH PLAIN LOGIN")
	if slices.Contains(lines, "250-STARTTLS") {
		t.Fatal("STARTTLS offered on implicit TLS")
	}
	c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	c.cmd("MAIL FROM:<a@b>", "250 *")
	c.cmd("RCPT TO:<x@y>", "250 *")
	c.cmd("DATA", "354 *")
	c.cmd("x\r\n.", "250 *")
	if be.messages()[0].env.TLS == nil {
		t.Fatal("Envelope.TLS not set")
	}
}

// A connection refused by the Limiter on an implicit-TLS listener used to
// wait forever in the TLS handshake that the refusal's write starts: a
// client that connects and sends nothing kept a goroutine and a descriptor
// however far over the limit it was.
func TestRefusedImplicitTLSConnectionIsClosed(t *testing.T) {
	srv := testServer(t, newBackend())
	srvCfg, cliCfg := selfSigned(t)
	srv.Limiter = &netpolicy.Limiter{Max: 1}
	srv.WriteTimeout = 200 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(l, srvCfg))
	t.Cleanup(func() { shutdown(t, srv) })

	conn, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c1 := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	expect(t, c1, "220 *")

	// Over the limit, and silent: the server must give up and close.
	c2 := dial(t, l.Addr().String())
	expectClosed(t, c2)
	c1.cmd("NOOP", "250 *")
}
