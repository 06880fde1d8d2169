package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/auth"
)

// A user removed from the users file must lose web access at once: the
// API answers 401 and an open event stream ends without delivering the
// next event of the deleted user's mailbox.
func TestDeletedUserLosesWebSession(t *testing.T) {
	both := usersFile(t, "alice", "bob")
	onlyBob := usersFile(t, "bob")
	var cur atomic.Pointer[auth.Users]
	cur.Store(both)
	e := newEnv(t, Options{Users: func() *auth.Users { return cur.Load() }, UsersFile: true})
	alice := e.client()
	var s sessionInfo
	alice.mustJSON("POST", "/api/v1/login", map[string]string{"user": "alice", "password": "alice-pw"}, 200, &s)
	alice.csrf = s.CSRFToken
	alice.mustJSON("GET", "/api/v1/mailboxes", nil, 200, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/events", nil)
	resp, err := alice.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("stream start %q", line)
	}

	cur.Store(onlyBob) // "postoffice user del alice"
	alice.mustJSON("GET", "/api/v1/mailboxes", nil, 401, nil)
	alice.mustJSON("GET", "/api/v1/mailboxes/alice/messages", nil, 401, nil)
	var s2 sessionInfo
	alice.mustJSON("GET", "/api/v1/session", nil, 200, &s2)
	if !s2.LoginRequired || s2.User != "" {
		t.Fatalf("session of a deleted user: %+v", s2)
	}

	id := e.deliver("alice", simple("x@y", "alice@x", "after deletion", "a"))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream did not end: %v", err)
	}
	if strings.Contains(string(rest), id) {
		t.Fatalf("deleted user's stream got the arrival: %q", rest)
	}
}

// bluemonday writes quotes inside attribute values as &#39; / &#34;, so a
// quoted url() in an inline style must still be recognized as remote
// content (the UI offers "load remote content" only when it is).
func TestRemoteContentDetectedInQuotedStyleURL(t *testing.T) {
	for _, body := range []string{
		`<p style="background:url('https://evil.example/x.png')">hi</p>`,
		`<p style='background-image: url("http://evil.example/x.png")'>hi</p>`,
		`<div style="background:URL( //evil.example/x.png )">hi</div>`,
		`<p style="background:url(&quot;https://evil.example/x.png&quot;)">hi</p>`,
	} {
		s := sanitizeHTML(body, nil, func(string) string { return "" }, false)
		if !s.Remote {
			t.Errorf("%s: remote content not detected in %s", body, s.HTML)
		}
	}
	s := sanitizeHTML(`<p style="color:red">x</p><img src="data:image/png;base64,iVBORw0KGgo=">`, nil, func(string) string { return "" }, false)
	if s.Remote {
		t.Errorf("local-only body flagged remote: %s", s.HTML)
	}
}

// Anyone can create anonymous sessions; filling the session table with
// them must not evict (log out) a logged-in user.
func TestAnonymousSessionFloodKeepsLogins(t *testing.T) {
	s := newSessionStore()
	alice := s.create("alice")
	for range maxSessions + 100 {
		s.create("")
	}
	if got := s.get(alice.id); got == nil || got.user != "alice" {
		t.Fatal("a flood of anonymous sessions logged alice out")
	}
	if n := len(s.m); n > maxSessions {
		t.Fatalf("%d sessions kept, cap %d", n, maxSessions)
	}
}

// Without a users file, a loopback client whose Host is another site's
// name (DNS rebinding) gets no no-login access, and must not get in by
// logging in with the well-known default credentials either.
func TestRebindingHostCannotLoginWithDefaultCredentials(t *testing.T) {
	e := newEnv(t, Options{}) // single user "user" / "pass", no users file
	e.deliver("user", simple("x@y", "user@x", "secret", "s"))
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	do := func(method, path, csrf, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		req.Host = "rebound.example:8025"
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if csrf != "" {
			req.Header.Set(csrfHeader, csrf)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	_, b := do("GET", "/api/v1/session", "", "")
	i := strings.Index(b, `"csrf_token":"`)
	if i < 0 {
		t.Fatalf("session: %s", b)
	}
	csrf := b[i+len(`"csrf_token":"`):]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	resp, b := do("POST", "/api/v1/login", csrf, `{"user":"user","password":"pass"}`)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login under a rebound Host: %d %s", resp.StatusCode, b)
	}
	if resp, b := do("GET", "/api/v1/mailboxes/user/messages", "", ""); resp.StatusCode != 401 {
		t.Fatalf("listing under a rebound Host: %d %s", resp.StatusCode, b)
	}
}

// The failure cap must hold against a burst of parallel login requests:
// HTTP has no per-IP connection cap, so without a bound on logins in
// progress every request of the burst would be checked before the first
// failure counted.
func TestParallelLoginsCannotOutrunFailureCap(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), 8) // slow enough to overlap
	if err != nil {
		t.Fatal(err)
	}
	u, err := auth.ParseUsers(strings.NewReader("alice:"+string(h)+"\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	const maxFailures = 3
	thr := auth.NewThrottle(auth.ThrottleConfig{BaseDelay: -1, MaxFailures: maxFailures, Window: time.Minute,
		Exempt: func(netip.Addr) bool { return false }})
	e := newEnv(t, Options{Users: func() *auth.Users { return u }, UsersFile: true, Throttle: thr,
		IsLocal: func(netip.Addr) bool { return false }})
	const burst = 20
	clients := make([]*client, burst)
	for i := range clients {
		clients[i] = e.client()
	}
	codes := make(chan int, burst)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := strings.NewReader(`{"user":"alice","password":"guess"}`)
			req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/login", b)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(csrfHeader, c.csrf)
			resp, err := c.hc.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	checked := 0
	for code := range codes {
		switch code {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("status %d", code)
		}
	}
	if limit := maxFailures + maxLoginsInFlight - 1; checked > limit {
		t.Fatalf("%d of %d parallel guesses were checked; the cap allows at most %d", checked, burst, limit)
	}
}

// docs/api.md states the statuses a loopback client gets under a foreign
// Host without a users file; they must be the ones the code answers (401
// for the API, 403 for the login).
func TestAPIDocMatchesForeignHostStatuses(t *testing.T) {
	e := newEnv(t, Options{})
	foreign := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		req.Host = "rebound.example:8025"
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	api := foreign("GET", "/api/v1/mailboxes", "")
	// The login, with the CSRF token of a session (its check comes first).
	c := e.client()
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/login", strings.NewReader(`{"user":"user","password":"pass"}`))
	req.Host = "rebound.example:8025"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(csrfHeader, c.csrf)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	login := resp.StatusCode
	if api != 401 || login != 403 {
		t.Fatalf("foreign Host: API %d, login %d; want 401, 403", api, login)
	}
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	for _, want := range []string{
		fmt.Sprintf("under a `Host` that is not loopback the API answers `%d`", api),
		fmt.Sprintf("the login with the single user's credentials answers `%d`", login),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/api.md does not say %q", want)
		}
	}
}
