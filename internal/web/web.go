// Package web is Postoffice's web inbox: a JSON API under /api/v1/ and a
// small browser UI (embedded HTML, CSS and hand-written JavaScript, no
// build step) over the same Maildir that SMTP delivers to and POP3 reads.
// See docs/api.md.
//
// Safety: HTML mail is sanitized (bluemonday) and shown in a sandboxed
// iframe without script permission, served with a restrictive
// Content-Security-Policy; remote content is blocked until asked for.
// Sessions are cookies (HttpOnly, SameSite=Strict, Secure over TLS); every
// mutation needs the session's CSRF token in the X-CSRF-Token header.
// Logins use the users of SMTP and POP3 and the same failed-login
// throttle. Each user sees their own mailbox; the admin sees all. Without a
// users file, clients on loopback need no login.
package web

import (
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"postoffice/internal/auth"
	"postoffice/internal/relay"
	"postoffice/internal/store"
)

//go:embed ui
var uiFiles embed.FS

// Options configures the web inbox.
type Options struct {
	// Store is the mailboxes to show and their change feed. Required.
	Store store.Browser
	// Users returns the current accounts (a users file, or the single
	// zero-configuration user). Required.
	Users func() *auth.Users
	// UsersFile is set when accounts come from a users file: then every
	// client must log in. Without it, clients for which IsLocal is true
	// (and whose Host header names a loopback host, against DNS
	// rebinding) need no login and see every mailbox; others log in as the
	// single user.
	UsersFile bool
	// Admin is a user who sees every mailbox ("" for none).
	Admin string
	// Throttle applies the failed-login penalty shared with SMTP and POP3.
	// Nil means no throttling (tests).
	Throttle *auth.Throttle
	// IsLocal tells the clients that need no login without a users file.
	// Nil means loopback addresses only.
	IsLocal func(netip.Addr) bool
	// Secure marks cookies Secure (the listener uses TLS).
	Secure bool
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Chaos is the SMTP fault-injection rule set of /api/v1/chaos; nil
	// answers 404 there.
	Chaos ChaosControl
	// ListenerLoopback is set when the HTTP listener listens on loopback
	// only: without a users file the chaos API is refused otherwise.
	ListenerLoopback bool
	// WaitMax caps the timeout of GET .../messages/wait (--wait-max);
	// zero means DefaultWaitMax.
	WaitMax time.Duration
	// LinkCheckAllow are the host globs (path.Match patterns, matched
	// against the lower-cased host) GET .../links?check=1 may contact
	// (--link-check-allow); nil allows none.
	LinkCheckAllow []string

	// Submit delivers the messages of POST /api/v1/send through the path
	// SMTP's take (see send.go); nil answers that endpoint 501.
	Submit Submitter
	// MaxMessageSize and MaxRecipients are SMTP's limits
	// (--max-message-size, --max-recipients), which send and release
	// apply too; 0 means 25 MiB and 100.
	MaxMessageSize int64
	MaxRecipients  int
	// Hostname is the domain of the Message-IDs that send makes
	// (--hostname); "" means "localhost".
	Hostname string
	// Relay and RelayPolicy release stored messages to another SMTP
	// server (release.go); without a policy that allows some recipient
	// (--relay-allow) release answers 403.
	Relay       *relay.Client
	RelayPolicy *relay.Policy
}

// Handler serves the web inbox. Mount it at "/".
type Handler struct {
	opts     Options
	log      *slog.Logger
	mail     store.Browser // opts.Store
	mux      *http.ServeMux
	sessions *sessionStore

	closeOnce sync.Once
	done      chan struct{}

	// waitHook, set by tests only, hears a wait's steps: "idle" each time
	// it blocks for an arrival, "done" when its handler returns.
	waitHook func(step string)
}

// New returns the web inbox handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil || opts.Users == nil {
		return nil, errors.New("web: Store and Users are required")
	}
	if opts.IsLocal == nil {
		opts.IsLocal = func(ip netip.Addr) bool { return ip.IsLoopback() }
	}
	h := &Handler{
		opts:     opts,
		log:      opts.Logger,
		mail:     opts.Store,
		mux:      http.NewServeMux(),
		sessions: newSessionStore(),
		done:     make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.routes()
	return h, nil
}

// Close ends the event streams (so that an http.Server's Shutdown does
// not wait for them). Register it with http.Server.RegisterOnShutdown. It
// is idempotent.
func (h *Handler) Close() {
	h.closeOnce.Do(func() { close(h.done) })
}

func (h *Handler) routes() {
	m := h.mux
	static, _ := fs.Sub(uiFiles, "ui")
	m.HandleFunc("GET /{$}", h.serveIndex)
	m.Handle("GET /static/", http.StripPrefix("/static/", h.staticHeaders(http.FileServerFS(static))))

	m.HandleFunc("GET /api/v1/openapi.json", h.getOpenAPI)
	m.HandleFunc("GET /api/v1/session", h.getSession)
	m.HandleFunc("POST /api/v1/login", h.mutation(h.login))
	m.HandleFunc("POST /api/v1/logout", h.mutation(h.logout))
	m.HandleFunc("GET /api/v1/events", h.authed(h.events))
	m.HandleFunc("GET /api/v1/mailboxes", h.authed(h.listMailboxes))
	const msgs = "/api/v1/mailboxes/{mailbox}/messages"
	m.HandleFunc("GET "+msgs, h.authed(h.mailbox(h.listMessages)))
	m.HandleFunc("DELETE "+msgs, h.mutation(h.authed(h.mailbox(h.deleteMessages))))
	m.HandleFunc("GET "+msgs+"/wait", h.authed(h.mailbox(h.waitMessage)))
	m.HandleFunc("GET "+msgs+"/latest", h.authed(h.mailbox(h.latestMessage)))
	m.HandleFunc("GET "+msgs+"/{id}/links", h.authed(h.mailbox(h.getLinks)))
	m.HandleFunc("GET "+msgs+"/{id}", h.authed(h.mailbox(h.getMessage)))
	m.HandleFunc("DELETE "+msgs+"/{id}", h.mutation(h.authed(h.mailbox(h.deleteMessage))))
	m.HandleFunc("PATCH "+msgs+"/{id}", h.mutation(h.authed(h.mailbox(h.patchMessage))))
	m.HandleFunc("GET "+msgs+"/{id}/raw", h.authed(h.mailbox(h.getRaw)))
	m.HandleFunc("GET "+msgs+"/{id}/parts/{part}", h.authed(h.mailbox(h.getPart)))
	m.HandleFunc("GET "+msgs+"/{id}/html", h.authed(h.mailbox(h.getHTML)))
	m.HandleFunc("GET /api/v1/chaos", h.chaos(false, h.getChaos))
	m.HandleFunc("PUT /api/v1/chaos", h.mutation(h.chaos(true, h.putChaos)))
	m.HandleFunc("DELETE /api/v1/chaos", h.mutation(h.chaos(true, h.deleteChaos)))
	m.HandleFunc("POST /api/v1/send", h.mutationLimit(h.sendBodyLimit(), h.authed(h.send)))
	m.HandleFunc("POST "+msgs+"/{id}/release", h.mutation(h.authed(h.mailbox(h.release))))
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(&jsonStatusWriter{ResponseWriter: w, api: strings.HasPrefix(r.URL.Path, "/api/")}, r)
}

// jsonStatusWriter turns the mux's plain-text 404 and 405 answers on API
// paths into JSON errors.
type jsonStatusWriter struct {
	http.ResponseWriter
	api        bool
	swallowing bool
}

func (w *jsonStatusWriter) WriteHeader(code int) {
	if w.api && (code == http.StatusMethodNotAllowed || code == http.StatusNotFound) &&
		strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.swallowing = true
		msg := "no such endpoint"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed"
		}
		writeError(w.ResponseWriter, code, msg)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *jsonStatusWriter) Write(b []byte) (int, error) {
	if w.swallowing {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets the event stream through the wrapper.
func (w *jsonStatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the real writer.
func (w *jsonStatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// appCSP is the Content-Security-Policy of the UI itself: nothing but its
// own origin, no inline script.
const appCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	b, err := uiFiles.ReadFile("ui/index.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "ui missing")
		return
	}
	w.Header().Set("Content-Security-Policy", appCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

func (h *Handler) staticHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", appCSP)
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// clientIP returns the address of the client of r.
func clientIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}

// loopbackHost reports whether the Host header of r names this machine's
// loopback interface (localhost, 127.0.0.0/8, ::1). A page of another site
// that rebinds its DNS name to 127.0.0.1 sends its own name as Host and so
// does not get the no-login access.
func loopbackHost(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
