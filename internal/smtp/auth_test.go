package smtp

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func authSession(t *testing.T, be *fakeBackend) *testsupport.Conn {
	t.Helper()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	return c
}

func TestAuthPlain(t *testing.T) {
	be := newBackend()
	c := authSession(t, be)
	c.Cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 2.7.0 Authentication successful")
	c.Cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "503 5.5.1 Error: already authenticated")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "250 *")
	if u := be.messages()[0].env.AuthUser; u != "user" {
		t.Fatalf("AuthUser = %q", u)
	}
}

func TestAuthPlainChallenge(t *testing.T) {
	c := authSession(t, newBackend())
	c.Cmd("auth plain", "334 ")
	c.Cmd(b64("user\x00user\x00pass"), "235 2.7.0 *")
}

func TestAuthFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"plain wrong password", []step{{"AUTH PLAIN " + b64("\x00user\x00wrong"), "535 5.7.8 Authentication credentials invalid"}}},
		{"plain unknown user", []step{{"AUTH PLAIN " + b64("\x00nobody\x00pass"), "535 5.7.8 *"}}},
		{"plain other authzid", []step{{"AUTH PLAIN " + b64("admin\x00user\x00pass"), "535 5.7.8 *"}}},
		{"plain malformed", []step{{"AUTH PLAIN " + b64("userpass"), "501 5.5.2 Invalid authentication data"}}},
		{"plain empty initial", []step{{"AUTH PLAIN =", "501 5.5.2 *"}}},
		{"plain bad base64", []step{{"AUTH PLAIN !!!", "501 5.5.2 Invalid base64 data"}}},
		{"plain cancel", []step{{"AUTH PLAIN", "334 "}, {"*", "501 5.0.0 Authentication cancelled"}}},
		{"plain bad base64 response", []step{{"AUTH PLAIN", "334 "}, {"%%%", "501 5.5.2 *"}}},
		{"login wrong", []step{{"AUTH LOGIN", "334 VXNlcm5hbWU6"}, {b64("user"), "334 UGFzc3dvcmQ6"}, {b64("nope"), "535 5.7.8 *"}}},
		{"login cancel", []step{{"AUTH LOGIN", "334 VXNlcm5hbWU6"}, {b64("user"), "334 UGFzc3dvcmQ6"}, {"*", "501 5.0.0 *"}}},
		{"login bad base64", []step{{"AUTH LOGIN", "334 VXNlcm5hbWU6"}, {"?", "501 5.5.2 *"}}},
		{"unknown mechanism", []step{{"AUTH GSSAPI", "504 5.5.4 *"}}},
		{"in transaction", []step{{"MAIL FROM:<a@b>", "250 *"}, {"AUTH PLAIN " + b64("\x00user\x00pass"), "503 5.5.1 *"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := newBackend()
			c := authSession(t, be)
			runSteps(t, c, tc.steps)
			// Not authenticated: a later good AUTH works.
			c.Cmd("RSET", "250 *")
			c.Cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 *")
		})
	}
}

func TestAuthLogin(t *testing.T) {
	be := newBackend()
	c := authSession(t, be)
	c.Cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.Cmd(b64("user"), "334 UGFzc3dvcmQ6")
	c.Cmd(b64("pass"), "235 2.7.0 Authentication successful")

	c2 := authSession(t, be)
	c2.Cmd("AUTH LOGIN "+b64("user"), "334 UGFzc3dvcmQ6")
	c2.Cmd(b64("pass"), "235 2.7.0 *")
}

// TestAuthNeedsTLS: a client that is not local gets no AUTH without TLS
// (RFC 4954 §4), unless AllowInsecureAuth.
func TestAuthNeedsTLS(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.IsLocal = notLocal
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	lines := c.Cmd("EHLO c", "250 BINARYMIME")
	for _, l := range lines {
		if l == "250-AUTH PLAIN LOGIN" {
			t.Fatal("AUTH advertised without TLS")
		}
	}
	c.Cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "538 5.7.11 Encryption required for requested authentication mechanism")
	c.Cmd("AUTH LOGIN", "538 5.7.11 *")

	srv2 := testServer(t, newBackend())
	srv2.IsLocal = notLocal
	srv2.AllowInsecureAuth = true
	c2 := dialGreeted(t, testsupport.Serve(t, srv2, ErrServerClosed))
	c2.Cmd("EHLO c", "250 AUTH PLAIN LOGIN")
	c2.Cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 *")
}

func TestAuthBackendErrors(t *testing.T) {
	be := newBackend()
	be.authErr = errors.New("users file unreadable")
	c := authSession(t, be)
	c.Cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "454 4.7.0 Temporary authentication failure (conn *)")
	be.mu.Lock()
	be.authErr = &Error{Code: 421, Enhanced: "4.7.0", Message: "Too many failed authentications"}
	be.mu.Unlock()
	c.Cmd("AUTH LOGIN "+b64("user"), "334 *")
	c.Cmd(b64("pass"), "421 4.7.0 Too many failed authentications")
	c.ExpectClosed()
}

// TestAuthFailuresCount: failed AUTH counts toward MaxErrors.
func TestAuthFailuresCount(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.MaxErrors = 2
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("AUTH PLAIN "+b64("\x00user\x00bad"), "535 *")
	c.Send("AUTH PLAIN " + b64("\x00user\x00bad") + "\r\n")
	c.ExpectReply("535 *")
	c.ExpectReply("421 4.7.0 * Too many errors*")
	c.ExpectClosed()
}

// An AUTH response line trickled one octet at a time used to reset the
// read deadline with every octet, so a client could hold a session forever
// inside an AUTH exchange; the whole line must now come within
// CommandTimeout, as a command line must.
func TestAuthResponseTrickleTimesOut(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.CommandTimeout = 200 * time.Millisecond
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	done := make(chan struct{})
	ranOut := make(chan bool, 1)
	go func() {
		// 3 s of trickle, far past the 200 ms command timeout.
		for range 60 {
			select {
			case <-done:
				ranOut <- false
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte("A")); err != nil {
				ranOut <- false
				return
			}
		}
		ranOut <- true
	}()
	c.ExpectReply("421 4.4.2 * Timeout exceeded*")
	close(done)
	if <-ranOut {
		t.Fatal("the timeout fired only after the client stopped trickling")
	}
}
