package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"postoffice/internal/auth"
)

// fakeChaos records what the chaos API did.
type fakeChaos struct {
	mu    sync.Mutex
	rules string
}

func (f *fakeChaos) ChaosView() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]any{"enabled": f.rules != "", "raw": f.rules}
}

func (f *fakeChaos) SetChaos(b []byte) error {
	if !json.Valid(b) {
		return errors.New("bad JSON")
	}
	f.mu.Lock()
	f.rules = string(b)
	f.mu.Unlock()
	return nil
}

func (f *fakeChaos) ClearChaos() { f.mu.Lock(); f.rules = ""; f.mu.Unlock() }

func (f *fakeChaos) get() string { f.mu.Lock(); defer f.mu.Unlock(); return f.rules }

// TestChaosAccessDecision: the table of who may use the chaos API.
func TestChaosAccessDecision(t *testing.T) {
	admin, user := principal{admin: true}, principal{user: "alice"}
	for _, c := range []struct {
		loopback, usersFile bool
		p                   principal
		loggedIn, write     bool
		want                int
	}{
		{true, false, admin, true, true, 0},                               // zero-config, local tool
		{true, false, admin, true, false, 0},                              // read too
		{false, false, admin, true, false, http.StatusForbidden},          // exposed listener, no login: refused even to read
		{false, false, admin, true, true, http.StatusForbidden},           // and to write
		{false, true, admin, true, true, 0},                               // users file: the admin may
		{false, true, user, true, false, 0},                               // a user may read
		{false, true, user, true, true, http.StatusForbidden},             // not write
		{true, true, user, true, true, http.StatusForbidden},              // on loopback either
		{false, true, principal{}, false, false, http.StatusUnauthorized}, // not logged in
	} {
		if got, msg := chaosAccess(c.loopback, c.usersFile, c.p, c.loggedIn, c.write); got != c.want {
			t.Errorf("%+v: %d %q, want %d", c, got, msg, c.want)
		}
	}
}

// TestChaosAPIRefusedOnExposedListener: without a users file and with the
// listener not on loopback, every chaos request is 403 JSON and nothing
// changes; on a loopback listener the same requests work.
func TestChaosAPIRefusedOnExposedListener(t *testing.T) {
	f := &fakeChaos{}
	e := newEnv(t, Options{Chaos: f, ListenerLoopback: false})
	c := e.client()
	c.mustJSON("GET", "/api/v1/chaos", nil, 403, nil)
	c.mustJSON("PUT", "/api/v1/chaos", map[string]any{"rules": []any{}}, 403, nil)
	c.mustJSON("DELETE", "/api/v1/chaos", nil, 403, nil)
	if f.get() != "" {
		t.Fatal("rules changed by a refused request")
	}

	f2 := &fakeChaos{}
	e2 := newEnv(t, Options{Chaos: f2, ListenerLoopback: true})
	c2 := e2.client()
	c2.mustJSON("PUT", "/api/v1/chaos", map[string]any{"seed": 1}, 200, nil)
	if f2.get() != `{"seed":1}` {
		t.Fatalf("rules %q", f2.get())
	}
	// The CSRF token is required as for every mutation.
	if resp, _ := c2.do("DELETE", "/api/v1/chaos", nil, false); resp.StatusCode != 403 {
		t.Fatalf("DELETE without CSRF: %d", resp.StatusCode)
	}
	c2.mustJSON("DELETE", "/api/v1/chaos", nil, 200, nil)
	if f2.get() != "" {
		t.Fatal("DELETE did not clear")
	}
	// A body the control refuses is a 400.
	resp, b := c2.doRaw("PUT", "/api/v1/chaos", "{not json")
	if resp.StatusCode != 400 {
		t.Fatalf("bad JSON: %d %s", resp.StatusCode, b)
	}
}

// TestChaosAPIAdminOnly: with a users file, only the admin changes rules;
// another user may read them.
func TestChaosAPIAdminOnly(t *testing.T) {
	u := usersFile(t, "alice", "root")
	f := &fakeChaos{}
	e := newEnv(t, Options{Users: func() *auth.Users { return u }, UsersFile: true, Admin: "root", Chaos: f})
	anon := e.client()
	anon.mustJSON("GET", "/api/v1/chaos", nil, 401, nil)

	var s sessionInfo
	alice := e.client()
	alice.mustJSON("POST", "/api/v1/login", map[string]string{"user": "alice", "password": "alice-pw"}, 200, &s)
	alice.csrf = s.CSRFToken
	alice.mustJSON("GET", "/api/v1/chaos", nil, 200, nil)
	alice.mustJSON("PUT", "/api/v1/chaos", map[string]any{"seed": 2}, 403, nil)
	alice.mustJSON("DELETE", "/api/v1/chaos", nil, 403, nil)

	root := e.client()
	root.mustJSON("POST", "/api/v1/login", map[string]string{"user": "root", "password": "root-pw"}, 200, &s)
	root.csrf = s.CSRFToken
	root.mustJSON("PUT", "/api/v1/chaos", map[string]any{"seed": 3}, 200, nil)
	if f.get() != `{"seed":3}` {
		t.Fatalf("rules %q", f.get())
	}
}

// TestChaosAPIWithoutEngine: a server without chaos answers 404 JSON.
func TestChaosAPIWithoutEngine(t *testing.T) {
	e := newEnv(t, Options{})
	e.client().mustJSON("GET", "/api/v1/chaos", nil, 404, nil)
}

// doRaw sends body as it is, with the JSON content type and the CSRF token.
func (c *client) doRaw(method, path, body string) (*http.Response, []byte) {
	c.e.t.Helper()
	req, err := http.NewRequest(method, c.e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(csrfHeader, c.csrf)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}
