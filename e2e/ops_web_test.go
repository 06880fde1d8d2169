package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// webClient is a browser of the web inbox of a running binary: a cookie
// jar and the session's CSRF token.
type webClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
}

func newWebClient(t *testing.T, p *proc) *webClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &webClient{t: t, base: "http://" + p.Addr("http"), hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	var s struct {
		CSRF string `json:"csrf_token"`
	}
	if code := c.do("GET", "/api/v1/session", "", &s); code != 200 {
		t.Fatalf("GET /api/v1/session: %d", code)
	}
	c.csrf = s.CSRF
	return c
}

// do sends a request (with the CSRF token and a JSON body when body is
// not empty), decodes a JSON answer into out when non-nil, and returns the
// status.
func (c *webClient) do(method, path, body string, out any) int {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if method != "GET" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// login logs the client in as user and keeps the new CSRF token.
func (c *webClient) login(user, pass string) int {
	c.t.Helper()
	var s struct {
		CSRF string `json:"csrf_token"`
	}
	b, _ := json.Marshal(map[string]string{"user": user, "password": pass})
	code := c.do("POST", "/api/v1/login", string(b), &s)
	if code == 200 {
		c.csrf = s.CSRF
	}
	return code
}

// TestOpsUserPasswdEndsWebSessions: `postoffice user passwd alice` edits
// the users file under a running server; once the server has reloaded it,
// alice's existing web session is logged out (401) as deleting her would
// do, bob's session is untouched, and alice logs in with the new password
// only.
func TestOpsUserPasswdEndsWebSessions(t *testing.T) {
	path := usersFile(t, map[string]string{"alice": "old-pass", "bob": "b-pass"})
	p := start(t, "", "--users-file", path, "--auth-delay", "0s")
	alice, bob := newWebClient(t, p), newWebClient(t, p)
	if code := alice.login("alice", "old-pass"); code != 200 {
		t.Fatalf("alice login: %d", code)
	}
	if code := bob.login("bob", "b-pass"); code != 200 {
		t.Fatalf("bob login: %d", code)
	}
	for _, c := range []*webClient{alice, bob} {
		if code := c.do("GET", "/api/v1/mailboxes", "", nil); code != 200 {
			t.Fatalf("mailboxes before passwd: %d", code)
		}
	}

	if code, out := runCLI(t, "new-pass\n", "user", "passwd", "--users-file", path, "--password-stdin", "--cost", "4", "alice"); code != 0 {
		t.Fatalf("passwd: %d %s", code, out)
	}
	// The watcher notices the new file within a second or so.
	if !testsupport.WaitUntil(20*time.Second, func() bool { return strings.Contains(p.Log(), "users file loaded") }) {
		t.Fatal("the users file was not reloaded")
	}

	if code := alice.do("GET", "/api/v1/mailboxes", "", nil); code != 401 {
		t.Errorf("alice's session after passwd: %d, want 401", code)
	}
	var s struct {
		User          string `json:"user"`
		LoginRequired bool   `json:"login_required"`
	}
	if code := alice.do("GET", "/api/v1/session", "", &s); code != 200 || s.User != "" || !s.LoginRequired {
		t.Errorf("alice's session info after passwd: %d %+v", code, s)
	}
	if code := bob.do("GET", "/api/v1/mailboxes", "", nil); code != 200 {
		t.Errorf("bob's session after alice's passwd: %d, want 200", code)
	}
	again := newWebClient(t, p)
	if code := again.login("alice", "old-pass"); code != 401 {
		t.Errorf("login with the old password: %d, want 401", code)
	}
	if code := again.login("alice", "new-pass"); code != 200 {
		t.Fatalf("login with the new password: %d", code)
	}
	if code := again.do("GET", "/api/v1/mailboxes", "", nil); code != 200 {
		t.Errorf("new session: %d", code)
	}
}

// TestOpsDefaultMailboxExistsAtStart: without a users file the default
// user's Maildir (README: mail goes to mailbox/user/new/) exists as soon as
// the server has started, before any delivery, so that `ls mailbox/user/new`
// and a Maildir reader work from the first minute.
func TestOpsDefaultMailboxExistsAtStart(t *testing.T) {
	requireMaildir(t, "checks the Maildir directories on disk")
	dir := filepath.Join(t.TempDir(), "mailbox")
	start(t, dir)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if fi, err := os.Stat(filepath.Join(dir, "user", sub)); err != nil || !fi.IsDir() {
			t.Errorf("mailbox/user/%s right after start: %v", sub, err)
		}
	}
	if files := mailFiles(t, dir, "user"); len(files) != 0 {
		t.Errorf("messages in the new mailbox: %v", files)
	}
}
