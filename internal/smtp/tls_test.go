package smtp

import (
	"crypto/tls"
	"slices"
	"testing"
	"time"

	"postoffice/internal/netpolicy"
	"postoffice/internal/testsupport"
)

func TestStartTLS(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srvCfg, cliCfg := testsupport.TLSPair(t, "mx.test")
	srv.TLSConfig = srvCfg
	srv.IsLocal = notLocal
	srv.RequireHelo = true // so that MAIL shows the HELO state reset
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	lines := c.Cmd("EHLO c", "250 STARTTLS")
	if slices.Contains(lines, "250-AUTH PLAIN LOGIN") {
		t.Fatal("AUTH offered before TLS to a non-local client")
	}
	c.Cmd("STARTTLS now", "501 5.5.4 *")
	c.Cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.StartTLS(cliCfg)
	// RFC 3207 §4.2: the session starts over.
	c.Cmd("MAIL FROM:<a@b>", "503 5.5.1 Error: send HELO/EHLO first")
	lines = c.Cmd("EHLO c", "250 AUTH PLAIN LOGIN")
	if slices.Contains(lines, "250-STARTTLS") {
		t.Fatal("STARTTLS offered again over TLS")
	}
	c.Cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	c.Cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("secret\r\n.", "250 *")
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
	srvCfg, cliCfg := testsupport.TLSPair(t, "mx.test")
	srv.TLSConfig = srvCfg
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Send("STARTTLS\r\nMAIL FROM:<injected@evil>\r\n")
	c.ExpectReply("220 2.0.0 Ready to start TLS")
	c.StartTLS(cliCfg)
	c.Cmd("EHLO c", "250 *")
	c.Cmd("RCPT TO:<x@y>", "503 5.5.1 Error: need MAIL command")
	if calls := be.mailCalls(); len(calls) != 0 {
		t.Fatalf("plaintext MAIL executed: %q", calls)
	}
}

func TestStartTLSHandshakeFailure(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.TLSConfig, _ = testsupport.TLSPair(t, "mx.test")
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("STARTTLS", "220 *")
	c.Send("this is not a TLS client hello\r\n\r\n\r\n")
	c.ExpectClosed()
}

func TestImplicitTLS(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srvCfg, cliCfg := testsupport.TLSPair(t, "mx.test")
	srv.IsLocal = notLocal
	addr := testsupport.ServeOn(t, srv, tls.NewListener(testsupport.Listen(t), srvCfg), ErrServerClosed)

	c := testsupport.DialTLS(t, addr, cliCfg)
	c.ConnID = true
	c.ExpectReply("220 mx.test ESMTP Postoffice ready")
	lines := c.Cmd("EHLO c", "250 AUTH PLAIN LOGIN")
	if slices.Contains(lines, "250-STARTTLS") {
		t.Fatal("STARTTLS offered on implicit TLS")
	}
	c.Cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "250 *")
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
	srvCfg, cliCfg := testsupport.TLSPair(t, "mx.test")
	srv.Limiter = &netpolicy.Limiter{Max: 1}
	srv.WriteTimeout = 200 * time.Millisecond
	addr := testsupport.ServeOn(t, srv, tls.NewListener(testsupport.Listen(t), srvCfg), ErrServerClosed)

	c1 := testsupport.DialTLS(t, addr, cliCfg)
	c1.ConnID = true
	c1.ExpectReply("220 *")

	// Over the limit, and silent: the server must give up and close.
	c2 := dial(t, addr)
	c2.ExpectClosed()
	c1.Cmd("NOOP", "250 *")
}
