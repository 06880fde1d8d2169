package smtp

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// authRecorder is a Backend recording the credentials Authenticate gets.
type authRecorder struct {
	*fakeBackend
	mu         sync.Mutex
	calls      int
	user, pass string
}

func (a *authRecorder) Authenticate(ctx context.Context, c ConnInfo, username, password string) error {
	a.mu.Lock()
	a.calls++
	a.user, a.pass = username, password
	a.mu.Unlock()
	return a.fakeBackend.Authenticate(ctx, c, username, password)
}

func (a *authRecorder) take() (calls int, user, pass string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	calls, user, pass = a.calls, a.user, a.pass
	a.calls, a.user, a.pass = 0, "", ""
	return
}

// isBase64Alphabet reports whether s holds only base64 characters, '=' and
// '*', so that it can stand as an AUTH argument on a command line.
func isBase64Alphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '*') {
			return false
		}
	}
	return true
}

// FuzzAuthPlain sends "AUTH PLAIN <initial response>" over a real session,
// the response being either the base64 of arbitrary bytes or an arbitrary
// base64-alphabet string, and checks the SASL PLAIN decoding (RFC 4616 §2,
// RFC 4954 §4) against a model: bad base64 and a cancel get 501; anything
// but exactly three NUL-separated fields gets 501 without a credentials
// check; an authorization identity other than the user gets 535 without a
// check; otherwise Authenticate sees exactly the user and password sent.
func FuzzAuthPlain(f *testing.F) {
	for _, s := range []string{"\x00user\x00pass", "user\x00user\x00pass", "x\x00user\x00pass", "\x00user\x00",
		"\x00\x00", "user\x00pass", "\x00user\x00pa\x00ss", "\x00us\xffer\x00p ass", ""} {
		f.Add([]byte(s), "", false)
	}
	for _, s := range []string{"*", "=", "AHVzZXIAcGFzcw", "AHVzZXIAcGFzcw===", "A", "====", "AHVzZXIAcGFzcw==*"} {
		f.Add([]byte(nil), s, true)
	}
	be := &authRecorder{fakeBackend: newBackend()}
	srv := &Server{
		Hostname:       "mx.test",
		Backend:        be,
		Logger:         slog.New(slog.DiscardHandler),
		AuthEnabled:    true,
		MaxErrors:      100,
		CommandTimeout: 5 * time.Second,
	}
	addr := testsupport.Serve(f, srv, ErrServerClosed)
	f.Fuzz(func(t *testing.T, raw []byte, arg string, useArg bool) {
		if !useArg {
			arg = base64.StdEncoding.EncodeToString(raw)
			if arg == "" {
				arg = "="
			}
		} else if arg == "" || !isBase64Alphabet(arg) {
			return
		}
		if len(arg) > 400 {
			return // beyond the command line limit: a different test
		}
		c := dialGreeted(t, addr)
		defer c.Close()
		c.Cmd("EHLO fuzz", "250 *")
		be.take()
		lines := c.Cmd("AUTH PLAIN "+arg, "*")
		got := lines[len(lines)-1]
		calls, user, pass := be.take()

		// The model.
		var decoded []byte
		switch arg {
		case "*":
			if !strings.HasPrefix(got, "501 5.0.0 ") || calls != 0 {
				t.Fatalf("cancel: %q, %d checks", got, calls)
			}
			return
		case "=":
			decoded = []byte{}
		default:
			var err error
			if decoded, err = base64.StdEncoding.DecodeString(arg); err != nil {
				if !strings.HasPrefix(got, "501 5.5.2 ") || calls != 0 {
					t.Fatalf("bad base64 %q: %q, %d checks", arg, got, calls)
				}
				return
			}
		}
		parts := bytes.Split(decoded, []byte{0})
		switch {
		case len(parts) != 3:
			if !strings.HasPrefix(got, "501 5.5.2 ") || calls != 0 {
				t.Fatalf("%q (%d fields): %q, %d checks", decoded, len(parts), got, calls)
			}
		case len(parts[0]) > 0 && !bytes.Equal(parts[0], parts[1]):
			if !strings.HasPrefix(got, "535 5.7.8 ") || calls != 0 {
				t.Fatalf("authzid %q for %q: %q, %d checks", parts[0], parts[1], got, calls)
			}
		default:
			if calls != 1 || user != string(parts[1]) || pass != string(parts[2]) {
				t.Fatalf("%q: Authenticate got %d calls, %q/%q", decoded, calls, user, pass)
			}
			want := "535 5.7.8 "
			if user == "user" && pass == "pass" {
				want = "235 2.7.0 "
			}
			if !strings.HasPrefix(got, want) {
				t.Fatalf("%q: got %q, want %s", decoded, got, want)
			}
		}
	})
}
