package imap

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"postoffice/internal/netpolicy"
	"postoffice/internal/testsupport"
)

// testBackend is the smallest backend the engine's own behaviour can be
// tested with: one user, an empty INBOX, APPEND that reads its literal.
// The real backend (internal/backend) is tested over the Maildir there.
type testBackend struct {
	mu       sync.Mutex
	appended [][]byte
}

func (b *testBackend) NewSession(c *ConnInfo) (Session, error) {
	return &testSession{b: b, c: c}, nil
}

type testSession struct {
	b        *testBackend
	c        *ConnInfo
	loggedIn bool
}

func (s *testSession) Close() error { return nil }
func (s *testSession) Login(u, p string) error {
	if u != "user" || p != "pass" {
		return imapserver.ErrAuthFailed
	}
	s.loggedIn = true
	s.c.LoggedIn(u)
	return nil
}
func (s *testSession) AuthenticateMechanisms() []string { return []string{sasl.Plain} }
func (s *testSession) Authenticate(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, u, p string) error { return s.Login(u, p) }), nil
}
func (s *testSession) AppendLimit() uint32 { return 1000 }
func (s *testSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: '/'}}}, nil
}
func (s *testSession) Select(string, *imap.SelectOptions) (*imap.SelectData, error) {
	return &imap.SelectData{UIDNext: 1, UIDValidity: 1}, nil
}
func (s *testSession) Create(string, *imap.CreateOptions) error         { return nil }
func (s *testSession) Delete(string) error                              { return nil }
func (s *testSession) Rename(string, string, *imap.RenameOptions) error { return nil }
func (s *testSession) Subscribe(string) error                           { return nil }
func (s *testSession) Unsubscribe(string) error                         { return nil }
func (s *testSession) List(w *imapserver.ListWriter, _ string, _ []string, _ *imap.ListOptions) error {
	return w.WriteList(&imap.ListData{Mailbox: "INBOX", Delim: '/'})
}
func (s *testSession) Status(name string, _ *imap.StatusOptions) (*imap.StatusData, error) {
	return &imap.StatusData{Mailbox: name}, nil
}
func (s *testSession) Append(_ string, r imap.LiteralReader, _ *imap.AppendOptions) (*imap.AppendData, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	s.b.mu.Lock()
	s.b.appended = append(s.b.appended, b)
	s.b.mu.Unlock()
	return &imap.AppendData{UID: 1, UIDValidity: 1}, nil
}
func (s *testSession) Poll(*imapserver.UpdateWriter, bool) error { return nil }
func (s *testSession) Idle(_ *imapserver.UpdateWriter, stop <-chan struct{}) error {
	<-stop
	return nil
}
func (s *testSession) Unselect() error                                       { return nil }
func (s *testSession) Expunge(*imapserver.ExpungeWriter, *imap.UIDSet) error { return nil }
func (s *testSession) Search(imapserver.NumKind, *imap.SearchCriteria, *imap.SearchOptions) (*imap.SearchData, error) {
	return &imap.SearchData{}, nil
}
func (s *testSession) Fetch(*imapserver.FetchWriter, imap.NumSet, *imap.FetchOptions) error {
	return nil
}
func (s *testSession) Store(*imapserver.FetchWriter, imap.NumSet, *imap.StoreFlags, *imap.StoreOptions) error {
	return nil
}
func (s *testSession) Copy(imap.NumSet, string) (*imap.CopyData, error)       { return nil, nil }
func (s *testSession) Move(*imapserver.MoveWriter, imap.NumSet, string) error { return nil }

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	commands []string
	sessions int
	idle     int
	rejected []string
}

func (r *recorder) ConnRejected(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, reason)
}
func (r *recorder) Session(d int) { r.mu.Lock(); r.sessions += d; r.mu.Unlock() }
func (r *recorder) Idle(d int)    { r.mu.Lock(); r.idle += d; r.mu.Unlock() }
func (r *recorder) Command(name, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commands = append(r.commands, name+" "+result)
}
func (r *recorder) get() (cmds []string, sessions, idle int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.commands...), r.sessions, r.idle
}

func newServer(t *testing.T, mod func(*Server)) (*Server, string) {
	t.Helper()
	srv := &Server{Backend: &testBackend{}, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(srv)
	}
	return srv, testsupport.Serve(t, srv, ErrServerClosed)
}

func dial(t *testing.T, addr string) *testsupport.Conn {
	t.Helper()
	return testsupport.Dial(t, addr)
}

// TestCapabilitiesByState: what the greeting and CAPABILITY advertise
// before and after login on loopback, and what they never advertise.
func TestCapabilitiesByState(t *testing.T) {
	serverTLS, _ := testsupport.TLSPair(t, "mx.test")
	_, addr := newServer(t, func(s *Server) { s.TLSConfig = serverTLS })
	c := dial(t, addr)
	greeting := c.Expect("* OK [CAPABILITY *] *")
	// LITERAL- before login (the engine's choice), LITERAL+ after.
	for _, want := range []string{"IMAP4rev2", "IMAP4rev1", "STARTTLS", "AUTH=PLAIN", "SASL-IR", "LITERAL-"} {
		if !hasWord(greeting, want) {
			t.Errorf("greeting %q lacks %s", greeting, want)
		}
	}
	c.IMAP("LOGIN user pass", "OK [CAPABILITY *] *")
	r := c.IMAP("CAPABILITY", "OK *")
	caps := strings.Join(r.Untagged, " ")
	for _, want := range []string{"IDLE", "MOVE", "UIDPLUS", "NAMESPACE", "ENABLE", "UNSELECT", "LITERAL+",
		"SPECIAL-USE", "STATUS=SIZE", "ESEARCH", "LIST-EXTENDED", "LIST-STATUS", "CHILDREN", "APPENDLIMIT=1000", "UTF8=ACCEPT"} {
		if !hasWord(caps, want) {
			t.Errorf("CAPABILITY %q lacks %s", caps, want)
		}
	}
	for _, never := range []string{"CONDSTORE", "QRESYNC", "STARTTLS", "AUTH=PLAIN", "LOGINDISABLED"} {
		if hasWord(caps, never) {
			t.Errorf("CAPABILITY after login %q advertises %s", caps, never)
		}
	}
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(s)) {
		if f == w {
			return true
		}
	}
	return false
}

// TestLoginDisabledWithoutTLS: a client that is not local gets
// LOGINDISABLED and PRIVACYREQUIRED until STARTTLS (RFC 9051 §6.2.3,
// §6.2.1), then logs in.
func TestLoginDisabledWithoutTLS(t *testing.T) {
	serverTLS, clientTLS := testsupport.TLSPair(t, "mx.test")
	_, addr := newServer(t, func(s *Server) {
		s.TLSConfig = serverTLS
		s.IsLocal = func(netip.Addr) bool { return false }
	})
	c := dial(t, addr)
	greeting := c.Expect("* OK [CAPABILITY *] *")
	if !hasWord(greeting, "LOGINDISABLED") || hasWord(greeting, "AUTH=PLAIN") {
		t.Fatalf("greeting %q: want LOGINDISABLED and no AUTH=PLAIN", greeting)
	}
	c.IMAP("LOGIN user pass", "NO [PRIVACYREQUIRED] *")
	c.IMAP("AUTHENTICATE PLAIN AHVzZXIAcGFzcw==", "NO [PRIVACYREQUIRED] *")
	c.IMAP("STARTTLS", "OK *")
	tc := testsupport.NewConn(t, tls.Client(c.Conn, clientTLS))
	r := tc.IMAP("CAPABILITY", "OK *")
	if caps := strings.Join(r.Untagged, " "); !hasWord(caps, "AUTH=PLAIN") || hasWord(caps, "LOGINDISABLED") || hasWord(caps, "STARTTLS") {
		t.Fatalf("CAPABILITY over TLS %q", caps)
	}
	tc.IMAP("LOGIN user pass", "OK *")
}

// TestNonSyncLiteralOverLimitEndsConnection is the engine patch for
// refused non-synchronizing literals: before it, the engine answered NO
// and then read the literal's data as commands (here "b NOOP" would have
// been answered). Now the reply is NO [TOOBIG], then BYE, then the end of
// the connection, with nothing of the data read as a command (RFC 7888
// §4).
func TestNonSyncLiteralOverLimitEndsConnection(t *testing.T) {
	_, addr := newServer(t, nil)
	c := dial(t, addr)
	c.IMAPLogin("user", "pass")
	c.Send("a APPEND INBOX {2000+}\r\nb NOOP\r\n")
	c.Expect("a NO [TOOBIG] *", "* BYE *")
	c.ExpectClosed()

	// Before login, in LOGIN's arguments (limit 4096).
	c = dial(t, addr)
	c.Expect("* OK *")
	c.Send("a LOGIN {5000+}\r\nb NOOP\r\n")
	c.Expect("a NO [TOOBIG] *", "* BYE *")
	c.ExpectClosed()
}

// TestSyncLiteralOverLimitRefusedAtOnce: a synchronizing literal over the
// APPENDLIMIT gets NO [TOOBIG] instead of the continuation request, so
// the client never sends it, and the session goes on (RFC 7889 §4).
func TestSyncLiteralOverLimitRefusedAtOnce(t *testing.T) {
	_, addr := newServer(t, nil)
	c := dial(t, addr)
	c.IMAPLogin("user", "pass")
	c.Send("a APPEND INBOX {10737418240}\r\n")
	c.Expect("a NO [TOOBIG] *")
	c.IMAP("NOOP", "OK *")
}

// TestAppendWithoutCRLFAfterLiteral is the engine patch of APPEND's end:
// before it, an APPEND whose literal was not followed by CRLF got no reply
// at all; now it gets BAD.
func TestAppendWithoutCRLFAfterLiteral(t *testing.T) {
	_, addr := newServer(t, nil)
	c := dial(t, addr)
	c.IMAPLogin("user", "pass")
	c.Send("a APPEND INBOX {3+}\r\nabcX\r\n")
	c.Expect("a BAD *")
}

// TestLoginTimeout: a connection that does not log in within the login
// timeout gets BYE and is closed.
func TestLoginTimeout(t *testing.T) {
	_, addr := newServer(t, func(s *Server) { s.LoginTimeout = 200 * time.Millisecond })
	c := dial(t, addr)
	c.Expect("* OK *")
	c.IMAP("NOOP", "OK *")
	c.Expect("* BYE *")
	c.ExpectClosed()

	// One that logs in in time stays.
	c = dial(t, addr)
	c.IMAPLogin("user", "pass")
	time.Sleep(400 * time.Millisecond)
	c.IMAP("NOOP", "OK *")
}

// TestIdleTimeout: a logged-in session silent longer than the idle
// timeout is closed, IDLE included; one that talks stays.
func TestIdleTimeout(t *testing.T) {
	_, addr := newServer(t, func(s *Server) { s.IdleTimeout = 300 * time.Millisecond })
	c := dial(t, addr)
	c.IMAPLogin("user", "pass")
	c.IMAP("SELECT INBOX", "OK *")
	c.Send("i IDLE\r\n")
	c.Expect("+ *", "* BYE *")
	c.ExpectClosed()
}

// TestConnectionLimit: beyond the limit a client gets BYE [UNAVAILABLE]
// as its greeting (RFC 9051 §7.1.5) and the refusal is counted.
func TestConnectionLimit(t *testing.T) {
	rec := &recorder{}
	_, addr := newServer(t, func(s *Server) {
		s.Limiter = &netpolicy.Limiter{Max: 1}
		s.Observer = rec
	})
	c := dial(t, addr)
	c.Expect("* OK *")
	c2 := dial(t, addr)
	c2.Expect("* BYE [UNAVAILABLE] *")
	c2.ExpectClosed()
	rec.mu.Lock()
	rejected := rec.rejected
	rec.mu.Unlock()
	if len(rejected) != 1 || rejected[0] != "limit" {
		t.Fatalf("rejections %q", rejected)
	}
	c.IMAP("LOGOUT", "OK *")
	c3 := testsupport.Dial(t, addr)
	testsupport.WaitFor(t, "a slot free again", func() bool {
		l, err := c3.ReadLine()
		if err == nil && strings.HasPrefix(l, "* OK") {
			return true
		}
		c3 = testsupport.Dial(t, addr)
		return false
	})
}

// TestCommandMetrics: every tagged command is counted by name and result,
// names the engine does not know as UNKNOWN; sessions and IDLE are
// gauged.
func TestCommandMetrics(t *testing.T) {
	rec := &recorder{}
	_, addr := newServer(t, func(s *Server) { s.Observer = rec })
	c := dial(t, addr)
	c.Expect("* OK *")
	c.IMAP("LOGIN user wrong", "NO *")
	c.IMAP("LOGIN user pass", "OK *")
	c.IMAP("SELECT INBOX", "OK *")
	c.IMAP("XYZZY-"+strings.Repeat("A", 50), "BAD *")
	c.Send("i IDLE\r\n")
	c.Expect("+ *")
	testsupport.WaitFor(t, "the IDLE gauge", func() bool { _, _, idle := rec.get(); return idle == 1 })
	c.Send("DONE\r\n")
	c.Expect("i OK *")
	c.IMAP("UID FETCH 1:* FLAGS", "OK *")
	cmds, sessions, idle := rec.get()
	want := []string{"LOGIN no", "LOGIN ok", "SELECT ok", "UNKNOWN bad", "IDLE ok", "UID FETCH ok"}
	if strings.Join(cmds, ",") != strings.Join(want, ",") || sessions != 1 || idle != 0 {
		t.Fatalf("commands %q sessions %d idle %d; want %q 1 0", cmds, sessions, idle, want)
	}
	c.IMAP("LOGOUT", "OK *")
	testsupport.WaitFor(t, "the session gauge back to 0", func() bool { _, s, _ := rec.get(); return s == 0 })
}

// TestShutdownSaysBye: Shutdown ends an idling session with BYE (RFC 9051
// §7.1.5) and returns.
func TestShutdownSaysBye(t *testing.T) {
	srv := &Server{Backend: &testBackend{}, Logger: slog.New(slog.DiscardHandler)}
	l := testsupport.Listen(t)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	c := dial(t, l.Addr().String())
	c.IMAPLogin("user", "pass")
	c.IMAP("SELECT INBOX", "OK *")
	c.Send("i IDLE\r\n")
	c.Expect("+ *")
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.Expect("* BYE *")
	c.ExpectClosed()
	if err := <-done; err != ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
}
