package smtp

import (
	"context"
	"errors"
	"io"
	"net"
	netsmtp "net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"postoffice/internal/testsupport"
)

func TestShutdownIdle(t *testing.T) {
	srv := testServer(t, newBackend())
	addr := testsupport.Serve(t, srv, ErrServerClosed)
	c := dialGreeted(t, addr)
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *") // mid-transaction but waiting for a command
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	c.ExpectReply("421 4.3.2 mx.test Service shutting down")
	c.ExpectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("listener still accepting after Shutdown")
	}
	l := testsupport.Listen(t)
	if err := srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestShutdownDuringData: the transaction in progress completes with its
// 250, then the session gets 421.
func TestShutdownDuringData(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("first part\r\n")
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	testsupport.WaitFor(t, "shutdown to start", srv.lc.Closing)
	time.Sleep(20 * time.Millisecond) // let Shutdown reach the session
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v during DATA", err)
	default:
	}
	c.Send("second part\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	c.ExpectReply("421 4.3.2 mx.test Service shutting down")
	c.ExpectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := be.messages()[0].data; got != "first part\r\nsecond part\r\n" {
		t.Fatalf("stored %q", got)
	}
}

// TestShutdownForce: when the context ends, sessions are closed and their
// messages not stored.
func TestShutdownForce(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("never finished\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.ExpectClosed()
	if len(be.messages()) != 0 || len(be.errs()) != 1 {
		t.Fatalf("messages %v errors %v", be.messages(), be.errs())
	}
}

func TestGoSMTPClient(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srvCfg, cliCfg := testsupport.TLSPair(t, "mx.test")
	srv.TLSConfig = srvCfg
	addr := testsupport.Serve(t, srv, ErrServerClosed)

	// Plain happy path.
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
	if err := c.SendMail("a@example.com", []string{"x@example.com", "y@example.com"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if size, ok := c.MaxMessageSize(); !ok || size != DefaultMaxMessageBytes {
		t.Errorf("SIZE = %d, %v", size, ok)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	// STARTTLS, AUTH, SMTPUTF8.
	c, err = gosmtp.DialStartTLS(addr, cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "user", "pass")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("jö@example.com", []string{"ü@example.com"}, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	msgs := be.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	if msgs[0].data != body || len(msgs[0].env.To) != 2 {
		t.Errorf("stored %q, to %q", msgs[0].data, msgs[0].env.To)
	}
	if m := msgs[1]; m.env.TLS == nil || m.env.AuthUser != "user" || !m.env.SMTPUTF8 || m.env.From != "jö@example.com" {
		t.Errorf("envelope %+v", m.env)
	}
}

// TestGoSMTPClientErrors checks the codes an independent client sees.
func TestGoSMTPClientErrors(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.MaxMessageBytes = 100
	c, err := gosmtp.Dial(testsupport.Serve(t, srv, ErrServerClosed))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.SendMail("a@b", []string{"x@y"}, strings.NewReader(strings.Repeat("x", 200)))
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("SendMail: %v", err)
	}
	if err := c.Rcpt("x@y", nil); !errors.As(err, &se) || se.Code != 503 {
		t.Fatalf("RCPT without MAIL: %v", err)
	}
}

func TestNetSMTPClient(t *testing.T) {
	be := newBackend()
	addr := testsupport.Serve(t, testServer(t, be), ErrServerClosed)
	auth := netsmtp.PlainAuth("", "user", "pass", "127.0.0.1")
	msg := "Subject: net/smtp\r\n\r\nhello\n.\nstill the body\r\n"
	if err := netsmtp.SendMail(addr, auth, "a@example.com", []string{"b@example.com"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	m := be.messages()[0]
	// net/smtp's dot writer turns bare LF into CRLF and stuffs the dot.
	if m.data != "Subject: net/smtp\r\n\r\nhello\r\n.\r\nstill the body\r\n" || m.env.AuthUser != "user" {
		t.Fatalf("stored %q, env %+v", m.data, m.env)
	}
}

// discardBackend accepts everything and keeps nothing.
type discardBackend struct{ *fakeBackend }

func (discardBackend) Data(ctx context.Context, env *Envelope, r io.Reader) (string, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", err
	}
	return "D1", nil
}

func BenchmarkSession2KB(b *testing.B) {
	srv := testServer(b, &discardBackend{newBackend()})
	srv.Logger = discardLogger()
	c := dialGreeted(b, testsupport.Serve(b, srv, ErrServerClosed))
	c.Cmd("EHLO bench", "250 *")
	line := strings.Repeat("abcdefghij", 7) + "\r\n"
	body := strings.Repeat(line, 2048/len(line)+1) + ".\r\n"
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		c.Send("MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n")
		c.ExpectReply("250 *")
		c.ExpectReply("250 *")
		c.ExpectReply("354 *")
		c.Send(body)
		c.ExpectReply("250 2.0.0 Ok: queued as D1")
	}
}
