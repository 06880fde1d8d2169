package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"postoffice/internal/auth"
)

// Session cookie and CSRF header names.
const (
	cookieName = "postoffice_session"
	csrfHeader = "X-CSRF-Token"
)

// Session limits.
const (
	sessionTTL  = 12 * time.Hour
	maxSessions = 10000
	maxBodySize = 64 << 10 // JSON request bodies
)

// session is one browser's state. A session without User is anonymous: it
// only carries the CSRF token that login needs.
type session struct {
	id, csrf string
	user     string // canonical user name; "" when not logged in
	hash     string // the user's password hash at login (see who)
	expires  time.Time
}

// sessionStore keeps sessions in memory; a restart logs everyone out.
type sessionStore struct {
	mu     sync.Mutex
	m      map[string]*session
	logins map[netip.Prefix]int // login attempts in progress, by client
}

func newSessionStore() *sessionStore {
	return &sessionStore{m: make(map[string]*session), logins: make(map[netip.Prefix]int)}
}

// maxLoginsInFlight bounds the concurrent login attempts of one client
// (IPv4 address or IPv6 /64). The throttle counts a failure only once it
// is checked, so without this bound a burst of parallel requests would all
// be checked before the cap on failures could stop any of them; POP3 and
// SMTP are bounded the same way by their per-IP connection caps.
const maxLoginsInFlight = 2

// beginLogin reserves a login attempt for ip; it reports false when the
// client already has maxLoginsInFlight in progress. Call end when done.
func (s *sessionStore) beginLogin(ip netip.Addr) (end func(), ok bool) {
	ip = ip.Unmap()
	key := netip.PrefixFrom(ip, ip.BitLen())
	if ip.Is6() {
		key, _ = ip.WithZone("").Prefix(64)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logins[key] >= maxLoginsInFlight {
		return nil, false
	}
	s.logins[key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.logins[key]--; s.logins[key] <= 0 {
			delete(s.logins, key)
		}
	}, true
}

// token returns 32 random octets, base64url.
func token() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for user ("" for anonymous).
func (s *sessionStore) create(user string) *session { return s.createWithHash(user, "") }

// createWithHash starts a session for user, logged in with the password
// whose hash is hash in the users file.
func (s *sessionStore) createWithHash(user, hash string) *session {
	now := time.Now()
	ss := &session{id: token(), csrf: token(), user: user, hash: hash, expires: now.Add(sessionTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		// Evict the oldest anonymous session, and a logged-in one only
		// when there is none: anyone can create anonymous sessions (GET
		// /api/v1/session), and a flood of them must not log users out.
		var oldest, oldestAnon *session
		for id, o := range s.m {
			switch {
			case now.After(o.expires):
				delete(s.m, id)
			case o.user == "":
				if oldestAnon == nil || o.expires.Before(oldestAnon.expires) {
					oldestAnon = o
				}
			case oldest == nil || o.expires.Before(oldest.expires):
				oldest = o
			}
		}
		if oldestAnon != nil {
			oldest = oldestAnon
		}
		if len(s.m) >= maxSessions && oldest != nil {
			delete(s.m, oldest.id)
		}
	}
	s.m[ss.id] = ss
	return ss
}

// get returns the live session of id.
func (s *sessionStore) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if time.Now().After(ss.expires) {
		delete(s.m, id)
		return nil
	}
	return ss
}

func (s *sessionStore) remove(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// setCookie sends the session cookie: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), Secure over TLS.
func (h *Handler) setCookie(w http.ResponseWriter, ss *session) {
	c := &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: h.opts.Secure, MaxAge: -1}
	if ss != nil {
		c.Value, c.MaxAge = ss.id, int(sessionTTL/time.Second)
	}
	http.SetCookie(w, c)
}

// session returns the session of r's cookie, or nil.
func (h *Handler) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	return h.sessions.get(c.Value)
}

// principal is who makes a request.
type principal struct {
	user  string // canonical user name; "" for the zero-config local client
	admin bool   // sees every mailbox
}

// mayRead reports whether p may see mailbox.
func (p principal) mayRead(mailbox string) bool { return p.admin || p.user == mailbox }

// noLogin reports whether r may use the inbox without logging in: no users
// file, a local client, and a loopback Host (see loopbackHost).
func (h *Handler) noLogin(r *http.Request) bool {
	return !h.opts.UsersFile && h.opts.IsLocal(clientIP(r)) && loopbackHost(r)
}

// who returns the principal of r, or false when r must log in first. A
// session whose user has since been removed from the users file, or whose
// password hash has changed since the login (`postoffice user passwd`),
// counts as logged out: deleting an account or changing its password ends
// the web sessions that knew the old credentials at the next request, as
// Dovecot's doveadm kick does for IMAP after a password change.
func (h *Handler) who(r *http.Request) (principal, bool) {
	ss := h.session(r)
	if ss != nil && ss.user != "" {
		if u, ok := h.opts.Users().Lookup(ss.user); !ok || u.Hash != ss.hash {
			ss = nil
		}
	}
	if ss != nil && ss.user != "" {
		admin := h.opts.Admin != "" && ss.user == auth.CanonicalName(h.opts.Admin)
		return principal{user: ss.user, admin: admin}, true
	}
	if h.noLogin(r) {
		return principal{admin: true}, true
	}
	return principal{}, false
}

type ctxKey struct{}

// authed requires a principal and passes it in the request context.
func (h *Handler) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := h.who(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, "login required")
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	}
}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(ctxKey{}).(principal)
	return p
}

// mutation requires the CSRF token of the request's session in the
// X-CSRF-Token header (a header other sites cannot set without a CORS
// preflight we never grant), and a JSON content type for a body.
func (h *Handler) mutation(next http.HandlerFunc) http.HandlerFunc {
	return h.mutationLimit(maxBodySize, next)
}

// mutationLimit is mutation with a body of at most limit octets.
func (h *Handler) mutationLimit(limit int64, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := h.session(r)
		got := r.Header.Get(csrfHeader)
		if ss == nil || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) != 1 {
			writeError(w, http.StatusForbidden, "missing or invalid CSRF token: GET /api/v1/session and send its csrf_token in the X-CSRF-Token header")
			return
		}
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "request body must be application/json")
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next(w, r)
	}
}

// sessionInfo is the answer of GET /api/v1/session and of login.
type sessionInfo struct {
	User          string `json:"user,omitempty"`
	Admin         bool   `json:"admin"`
	LoginRequired bool   `json:"login_required"`
	CSRFToken     string `json:"csrf_token"`
}

// getSession returns who the client is and its CSRF token, creating an
// anonymous session when it has none.
func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) {
	ss := h.session(r)
	if ss == nil {
		ss = h.sessions.create("")
		h.setCookie(w, ss)
	}
	info := sessionInfo{CSRFToken: ss.csrf}
	if p, ok := h.who(r); ok {
		info.User, info.Admin = p.user, p.admin
	} else {
		info.LoginRequired = true
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, info)
}

// login checks a user name and password with the users and the failed-login
// throttle of SMTP and POP3, and starts a new session (a fresh id and CSRF
// token, against session fixation).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.User == "" {
		writeError(w, http.StatusBadRequest, "want {\"user\": ..., \"password\": ...}")
		return
	}
	ip := clientIP(r)
	if !h.opts.UsersFile && ip.IsLoopback() && !loopbackHost(r) {
		// Against DNS rebinding: a page of another site whose name now
		// resolves to 127.0.0.1 is refused the no-login access by its
		// Host (see loopbackHost), and must not get in by logging in
		// with the well-known default credentials instead.
		writeError(w, http.StatusForbidden, "without a users file, open the inbox at http://localhost:PORT/ or http://127.0.0.1:PORT/")
		return
	}
	if !h.opts.IsLocal(ip) {
		end, ok := h.sessions.beginLogin(ip)
		if !ok {
			writeError(w, http.StatusTooManyRequests, "another login from your address is in progress, try again")
			return
		}
		defer end()
	}
	if h.opts.Throttle.Blocked(ip) {
		writeError(w, http.StatusTooManyRequests, "too many failed logins from your address, try later")
		return
	}
	name := auth.CanonicalName(req.User)
	users := h.opts.Users() // one snapshot: the hash kept is the one checked
	err := h.opts.Throttle.Check(r.Context(), ip, users.Verify(name, req.Password))
	if errors.Is(err, context.Canceled) {
		return
	}
	if err != nil {
		h.log.Info("web login failed", "ip", ip.String(), "user", name)
		writeError(w, http.StatusUnauthorized, "invalid user name or password")
		return
	}
	if old := h.session(r); old != nil {
		h.sessions.remove(old.id)
	}
	u, _ := users.Lookup(name)
	ss := h.sessions.createWithHash(name, u.Hash)
	h.setCookie(w, ss)
	h.log.Info("web login", "ip", ip.String(), "user", name)
	admin := h.opts.Admin != "" && name == auth.CanonicalName(h.opts.Admin)
	writeJSON(w, http.StatusOK, sessionInfo{User: name, Admin: admin, CSRFToken: ss.csrf})
}

// logout ends the session and starts an anonymous one.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if old := h.session(r); old != nil {
		h.sessions.remove(old.id)
	}
	ss := h.sessions.create("")
	h.setCookie(w, ss)
	writeJSON(w, http.StatusOK, sessionInfo{CSRFToken: ss.csrf, LoginRequired: !h.noLogin(r)})
}
