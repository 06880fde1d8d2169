package smtp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	"postoffice/internal/testsupport"
)

// message is what the fake backend stored.
type message struct {
	env  Envelope
	data string
}

// fakeBackend is an in-memory Backend.
type fakeBackend struct {
	mu       sync.Mutex
	mails    []string // MAIL FROM calls
	rcpts    []string // RCPT TO calls
	msgs     []message
	dataErrs []error // errors returned by Data
	users    map[string]string

	mailErr  error
	rcptErr  map[string]error
	dataErr  error                             // returned by Data after reading everything
	dataHook func(env *Envelope)               // called at the start of Data
	authErr  error                             // returned by Authenticate instead of checking users
	mailHook func(env *Envelope)               // called by Mail
	readHook func(r io.Reader) (string, error) // replaces reading in Data
}

func newBackend() *fakeBackend {
	return &fakeBackend{users: map[string]string{"user": "pass"}}
}

func (b *fakeBackend) Mail(ctx context.Context, env *Envelope) error {
	if b.mailHook != nil {
		b.mailHook(env)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mails = append(b.mails, env.From)
	return b.mailErr
}

func (b *fakeBackend) Rcpt(ctx context.Context, env *Envelope, to string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rcpts = append(b.rcpts, to)
	if err := b.rcptErr[to]; err != nil {
		return err
	}
	return nil
}

func (b *fakeBackend) Data(ctx context.Context, env *Envelope, r io.Reader) (string, error) {
	if b.dataHook != nil {
		b.dataHook(env)
	}
	var (
		data []byte
		err  error
	)
	if b.readHook != nil {
		_, err = b.readHook(r)
	} else {
		data, err = io.ReadAll(r)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.dataErrs = append(b.dataErrs, err)
		return "", fmt.Errorf("read message: %w", err)
	}
	if b.dataErr != nil {
		b.dataErrs = append(b.dataErrs, b.dataErr)
		return "", b.dataErr
	}
	e := *env
	e.To = append([]string(nil), env.To...)
	b.msgs = append(b.msgs, message{env: e, data: string(data)})
	return fmt.Sprintf("Q%d", len(b.msgs)), nil
}

func (b *fakeBackend) Authenticate(ctx context.Context, c ConnInfo, username, password string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.authErr != nil {
		return b.authErr
	}
	if p, ok := b.users[username]; ok && p == password {
		return nil
	}
	return ErrAuthFailed
}

func (b *fakeBackend) messages() []message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]message(nil), b.msgs...)
}

func (b *fakeBackend) errs() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]error(nil), b.dataErrs...)
}

func (b *fakeBackend) mailCalls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.mails...)
}

// testServer returns a server with test-friendly settings on be.
func testServer(t testing.TB, be Backend) *Server {
	return &Server{
		Hostname:    "mx.test",
		Backend:     be,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		AuthEnabled: true,
	}
}

// dial connects to addr. Every 4xx/5xx reply the test reads must name the
// connection (the id is echoed in 4xx/5xx replies); patterns are written
// without that suffix.
func dial(t testing.TB, addr string) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.ConnID = true
	return c
}

// dialGreeted dials and checks the greeting.
func dialGreeted(t testing.TB, addr string) *testsupport.Conn {
	t.Helper()
	c := dial(t, addr)
	c.ExpectReply("220 mx.test ESMTP Postoffice ready")
	return c
}

func notLocal(netip.Addr) bool { return false }
