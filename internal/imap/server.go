// Package imap serves IMAP (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1)
// with the go-imap v2 imapserver engine: listeners, connection limits,
// the per-connection plaintext-login policy, login and idle timeouts,
// metrics and graceful shutdown. It knows nothing about disks: the
// sessions come from a Backend (internal/backend).
package imap

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postoffice/internal/netpolicy"
	"postoffice/internal/textio"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = textio.ErrClosed

// ConnInfo describes a client connection to the backend.
type ConnInfo struct {
	ID         string
	RemoteAddr net.Addr
	LocalAddr  net.Addr
	RemoteIP   netip.Addr
	// Conn is the engine's connection (for EnabledCaps and Bye).
	Conn *imapserver.Conn
	// LoggedIn must be called by the session when a login succeeds: it
	// stops the login timer.
	LoggedIn func(user string)
	// Logger carries the connection id.
	Logger *slog.Logger
}

// TLS reports whether the connection is encrypted now (implicit TLS, or
// after STARTTLS).
func (c *ConnInfo) TLS() bool {
	_, ok := c.Conn.NetConn().(*tls.Conn)
	return ok
}

// Session is what a backend session implements.
type Session interface {
	imapserver.SessionIMAP4rev2
	imapserver.SessionSASL
	imapserver.SessionAppendLimit
}

// Backend makes a session for each connection.
type Backend interface {
	NewSession(c *ConnInfo) (Session, error)
}

// Observer counts what the engine sees (the metrics).
type Observer interface {
	// ConnRejected: a connection refused before its session started;
	// reason is "limit" or "shutdown".
	ConnRejected(reason string)
	// Session: a session began (+1) or ended (-1).
	Session(delta int)
	// Command: a tagged command was answered; name is upper case ("UID
	// FETCH"), result "ok", "no" or "bad".
	Command(name, result string)
	// Idle: a session entered (+1) or left (-1) IDLE.
	Idle(delta int)
}

type nopObserver struct{}

func (nopObserver) ConnRejected(string)    {}
func (nopObserver) Session(int)            {}
func (nopObserver) Command(string, string) {}
func (nopObserver) Idle(int)               {}
func (s *Server) observer() Observer       { return cmpObserver(s.Observer) }
func cmpObserver(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}

// Server is an IMAP server. Set the fields before the first Serve.
type Server struct {
	Backend Backend
	Logger  *slog.Logger
	// TLSConfig enables STARTTLS on plain listeners (and is what an
	// implicit-TLS listener was wrapped with); nil: no TLS.
	TLSConfig *tls.Config
	// AllowInsecureAuth lets every client log in without TLS; otherwise
	// only local ones may (LOGINDISABLED for the others until STARTTLS,
	// RFC 9051 §6.2.3).
	AllowInsecureAuth bool
	// IsLocal reports whether a client address counts as local (loopback
	// and --trusted-networks); nil means IsLoopback.
	IsLocal func(netip.Addr) bool
	Limiter *netpolicy.Limiter
	// LoginTimeout ends a connection that has not logged in by then.
	LoginTimeout time.Duration
	// IdleTimeout ends a logged-in session silent that long (RFC 9051
	// §5.4: at least 30 minutes); CommandTimeout bounds reading one
	// command and the pauses before login.
	IdleTimeout    time.Duration
	CommandTimeout time.Duration
	Observer       Observer

	lc   textio.Lifecycle
	once sync.Once
	eng  *imapserver.Server
}

// Caps are the capabilities advertised (besides those the engine adds by
// state: STARTTLS, AUTH=PLAIN or LOGINDISABLED, SASL-IR, LITERAL-,
// UNSELECT, ENABLE, IDLE, UTF8=ACCEPT, APPENDLIMIT=<n>).
var Caps = imap.CapSet{
	imap.CapIMAP4rev1:    {},
	imap.CapIMAP4rev2:    {},
	imap.CapNamespace:    {},
	imap.CapUIDPlus:      {},
	imap.CapESearch:      {},
	imap.CapListExtended: {},
	imap.CapListStatus:   {},
	imap.CapMove:         {},
	imap.CapStatusSize:   {},
	imap.CapChildren:     {},
	imap.CapSpecialUse:   {},
	imap.CapLiteralPlus:  {},
}

func (s *Server) engine() *imapserver.Server {
	s.once.Do(func() {
		s.eng = imapserver.New(&imapserver.Options{
			NewSession:       s.newSession,
			Caps:             Caps,
			Logger:           engineLogger{s.Logger},
			TLSConfig:        s.TLSConfig,
			InsecureAuthConn: s.insecureAuth,
			CommandTimeout:   s.CommandTimeout,
			IdleTimeout:      s.IdleTimeout,
			CommandDone:      s.commandDone,
		})
	})
	return s.eng
}

// insecureAuth reports whether a client on a connection without TLS may
// log in: with --allow-insecure-auth, from loopback, or from a trusted
// network.
func (s *Server) insecureAuth(c net.Conn) bool {
	if s.AllowInsecureAuth {
		return true
	}
	ip := netpolicy.AddrIP(c.RemoteAddr())
	if s.IsLocal != nil {
		return s.IsLocal(ip)
	}
	return ip.IsLoopback()
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	eng := s.engine()
	return s.lc.Serve(l, s.Logger, func(c net.Conn) {
		release, err := s.acquire(c.RemoteAddr())
		if err != nil {
			s.observer().ConnRejected("limit")
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			// RFC 9051 §7.1.5: BYE may be the greeting of a server
			// that refuses the connection.
			fmt.Fprintf(c, "* BYE [UNAVAILABLE] %s, try later\r\n", err)
			c.Close()
			return
		}
		defer release()
		eng.ServeConn(c)
	})
}

// acquire takes a connection slot of the Limiter, if any.
func (s *Server) acquire(addr net.Addr) (func(), error) {
	if s.Limiter == nil {
		return func() {}, nil
	}
	return s.Limiter.Acquire(addr)
}

// newSession is the engine's NewSession: a backend session with the
// connection's login timer and shutdown tracking.
func (s *Server) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	nc := conn.NetConn()
	t := &tracked{conn: conn}
	if !s.lc.Track(t) {
		s.observer().ConnRejected("shutdown")
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	id := netpolicy.NewID()
	log := s.Logger.With("conn", id, "remote", nc.RemoteAddr().String())
	var timer *time.Timer
	if s.LoginTimeout > 0 {
		timer = time.AfterFunc(s.LoginTimeout, func() {
			log.Info("login timeout")
			conn.Bye("Login timeout, closing")
		})
	}
	info := &ConnInfo{
		ID:         id,
		RemoteAddr: nc.RemoteAddr(),
		LocalAddr:  nc.LocalAddr(),
		RemoteIP:   netpolicy.AddrIP(nc.RemoteAddr()),
		Conn:       conn,
		Logger:     log,
		LoggedIn: func(user string) {
			if timer != nil {
				timer.Stop()
			}
			log.Info("login", "user", user)
		},
	}
	sess, err := s.Backend.NewSession(info)
	if err != nil {
		s.lc.Untrack(t)
		if timer != nil {
			timer.Stop()
		}
		return nil, nil, err
	}
	log.Debug("connect")
	s.observer().Session(1)
	return &session{Session: sess, srv: s, t: t, timer: timer}, nil, nil
}

// commandDone counts a command and keeps the IDLE gauge.
func (s *Server) commandDone(conn *imapserver.Conn, name string, status imap.StatusResponseType) {
	result := "ok"
	switch status {
	case imap.StatusResponseTypeNo:
		result = "no"
	case imap.StatusResponseTypeBad:
		result = "bad"
	}
	if !knownCommands[name] {
		name = "UNKNOWN" // a client's word: keep the label set bounded
	}
	s.observer().Command(name, result)
}

// knownCommands are the commands the engine dispatches.
var knownCommands = map[string]bool{}

func init() {
	for _, c := range strings.Fields("NOOP CHECK LOGOUT CAPABILITY STARTTLS AUTHENTICATE UNAUTHENTICATE LOGIN ENABLE " +
		"CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE STATUS LIST LSUB NAMESPACE IDLE SELECT EXAMINE CLOSE UNSELECT " +
		"APPEND FETCH EXPUNGE STORE COPY MOVE SEARCH") {
		knownCommands[c] = true
	}
	for _, c := range strings.Fields("FETCH EXPUNGE STORE COPY MOVE SEARCH") {
		knownCommands["UID "+c] = true
	}
}

// Shutdown stops accepting, says BYE to every session (RFC 9051 §7.1.5)
// and waits for the connections to end until ctx is done; then it closes
// the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.lc.Shutdown(ctx)
}

// session wraps a backend session: it ends the login timer and counts
// sessions and IDLE.
type session struct {
	Session
	srv   *Server
	t     *tracked
	timer *time.Timer
}

func (s *session) Close() error {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.srv.lc.Untrack(s.t)
	s.srv.observer().Session(-1)
	return s.Session.Close()
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.srv.observer().Idle(1)
	defer s.srv.observer().Idle(-1)
	return s.Session.Idle(w, stop)
}

// tracked is a session as textio.Lifecycle sees it.
type tracked struct {
	conn *imapserver.Conn
	once sync.Once
}

// Stop says BYE and closes: at once, since the engine answers one
// command at a time and a command's effects are durable before its reply;
// a reply not yet written is lost with the connection, as with any
// disconnect, and the client resynchronizes at its next login.
func (t *tracked) Stop() {
	t.once.Do(func() { t.conn.Bye("Server shutting down") })
}

func (t *tracked) ForceClose() { t.conn.NetConn().Close() }

// engineLogger sends the engine's messages to the log.
type engineLogger struct{ log *slog.Logger }

func (l engineLogger) Printf(format string, args ...any) {
	if l.log != nil {
		l.log.Warn("imap engine", "msg", fmt.Sprintf(format, args...))
	}
}
