package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend is an in-memory Backend: users with passwords, one mailbox per
// user, an exclusive lock per mailbox, and a record of every maildrop opened.
type fakeBackend struct {
	mu      sync.Mutex
	pass    map[string]string
	boxes   map[string][][]byte
	locked  map[string]bool
	drops   []*fakeDrop
	logins  int
	failErr error // if set, Login returns it before checking anything

	// Hooks for fault injection.
	commitErr    error
	keepOnCommit bool // Commit records but removes nothing (fuzzing)
	openErr      error
	panicLogin   bool
	panicOpen    bool
	gate         *gate // if set, reading a message waits for it to open
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		pass:   map[string]string{"user": "pass"},
		boxes:  map[string][][]byte{},
		locked: map[string]bool{},
	}
}

// add appends messages to user's mailbox.
func (b *fakeBackend) add(user string, msgs ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		b.boxes[user] = append(b.boxes[user], []byte(m))
	}
}

func (b *fakeBackend) Login(ctx context.Context, c ConnInfo, username, password string) (Maildrop, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logins++
	if b.panicLogin {
		panic("fake backend login panic")
	}
	if b.failErr != nil {
		return nil, b.failErr
	}
	if p, ok := b.pass[username]; !ok || p != password {
		return nil, ErrAuthFailed
	}
	if b.locked[username] {
		return nil, ErrInUse
	}
	b.locked[username] = true
	d := &fakeDrop{b: b, user: username, closed: make(chan struct{})}
	for i, m := range b.boxes[username] {
		d.data = append(d.data, m)
		d.msgs = append(d.msgs, Message{UID: fmt.Sprintf("uid-%s-%d", username, i+1), Size: int64(len(m))})
	}
	b.drops = append(b.drops, d)
	return d, nil
}

// lastDrop returns the most recently opened maildrop.
func (b *fakeBackend) lastDrop(t *testing.T) *fakeDrop {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.drops) == 0 {
		t.Fatal("no maildrop was opened")
	}
	return b.drops[len(b.drops)-1]
}

// set changes the backend under its lock.
func (b *fakeBackend) set(f func(*fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// count returns the number of messages in user's mailbox.
func (b *fakeBackend) count(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.boxes[user])
}

func (b *fakeBackend) loginCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logins
}

func (b *fakeBackend) isLocked(user string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.locked[user]
}

// fakeDrop is the Maildrop of fakeBackend. It records Commit calls.
type fakeDrop struct {
	b      *fakeBackend
	user   string
	msgs   []Message
	data   [][]byte
	closed chan struct{}

	mu      sync.Mutex
	commits [][]int
	nclose  int
}

func (d *fakeDrop) Messages() []Message { return d.msgs }

func (d *fakeDrop) Open(i int) (io.ReadCloser, error) {
	d.b.mu.Lock()
	err, p, gate := d.b.openErr, d.b.panicOpen, d.b.gate
	d.b.mu.Unlock()
	if p {
		panic("fake maildrop open panic")
	}
	if err != nil {
		return nil, err
	}
	if gate != nil {
		return io.NopCloser(io.MultiReader(gate, bytes.NewReader(d.data[i]))), nil
	}
	return io.NopCloser(bytes.NewReader(d.data[i])), nil
}

// gate is a reader that reports when it is first read, then blocks until
// released and yields nothing.
type gate struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) Read([]byte) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.release
	return 0, io.EOF
}

func (d *fakeDrop) Commit(indexes []int) error {
	d.mu.Lock()
	d.commits = append(d.commits, append([]int(nil), indexes...))
	d.mu.Unlock()
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	if d.b.commitErr != nil {
		return d.b.commitErr
	}
	if d.b.keepOnCommit {
		return nil
	}
	del := map[int]bool{}
	for _, i := range indexes {
		del[i] = true
	}
	var keep [][]byte
	for i, m := range d.b.boxes[d.user] {
		if !del[i] {
			keep = append(keep, m)
		}
	}
	d.b.boxes[d.user] = keep
	return nil
}

func (d *fakeDrop) Close() error {
	d.mu.Lock()
	d.nclose++
	n := d.nclose
	d.mu.Unlock()
	if n > 1 {
		return errors.New("maildrop closed twice")
	}
	d.b.mu.Lock()
	d.b.locked[d.user] = false
	d.b.mu.Unlock()
	close(d.closed)
	return nil
}

// waitClosed waits until the maildrop has been closed exactly once.
func (d *fakeDrop) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-d.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("maildrop was not closed")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nclose != 1 {
		t.Fatalf("maildrop closed %d times", d.nclose)
	}
}

func (d *fakeDrop) commitCalls() [][]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]int(nil), d.commits...)
}

// startServer serves srv on a fresh 127.0.0.1 listener and shuts it down at
// the end of the test. It returns the listener address.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, srv, l)
}

func serveOn(t testing.TB, srv *Server, l net.Listener) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String()
}

// client is a line-level test client with glob expectations.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newClient(t, c)
}

func newClient(t testing.TB, c net.Conn) *client {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

// send writes each line with CRLF in a single write (a pipelined group).
func (c *client) send(lines ...string) {
	c.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		c.t.Fatalf("send %q: %v", lines, err)
	}
}

// readLine reads one CRLF-terminated line and returns it without CRLF.
func (c *client) readLine() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads one line per pattern and checks it against the glob pattern,
// in which '*' matches any run of characters and everything else is literal.
func (c *client) expect(patterns ...string) {
	c.t.Helper()
	for _, p := range patterns {
		l := c.readLine()
		if !glob(p, l) {
			c.t.Fatalf("got %q, want %q", l, p)
		}
	}
}

// expectMulti checks the first line of a multi-line reply and returns the
// undotted lines of its body.
func (c *client) expectMulti(first string) []string {
	c.t.Helper()
	c.expect(first)
	var body []string
	for {
		l := c.readLine()
		if l == "." {
			return body
		}
		body = append(body, strings.TrimPrefix(l, "."))
	}
}

// expectClosed checks that the server closes the connection with nothing
// more to say.
func (c *client) expectClosed() {
	c.t.Helper()
	b, err := c.r.ReadString('\n')
	if err == nil || b != "" {
		c.t.Fatalf("expected close, got %q, %v", b, err)
	}
}

// login authenticates with USER/PASS and checks the greeting.
func (c *client) login(user, pass string) {
	c.t.Helper()
	c.expect("+OK Postoffice POP3 ready")
	c.send("USER "+user, "PASS "+pass)
	c.expect("+OK*", "+OK maildrop locked and ready*")
}

func glob(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	if pattern[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if glob(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && s[0] == pattern[0] && glob(pattern[1:], s[1:])
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"+OK*", "+OK hi", true},
		{"-ERR [SYS/TEMP] *", "-ERR [SYS/TEMP] x", true},
		{"-ERR [SYS/TEMP] *", "-ERR [AUTH] x", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"abc", "abcd", false},
	} {
		if got := glob(c.p, c.s); got != c.want {
			t.Errorf("glob(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

// testTLSConfig returns a server config with a fresh self-signed certificate
// for 127.0.0.1 and a client config that trusts it.
func testTLSConfig(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "postoffice test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}
