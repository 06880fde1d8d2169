package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"postoffice/internal/smtp"
	"postoffice/internal/store/maildir"
)

type dir map[string]string

func (d dir) Resolve(l string) (string, bool) {
	u, ok := d[strings.ToLower(l)]
	return u, ok
}

func TestRoute(t *testing.T) {
	users := dir{"alice": "alice", "bob": "bob"}
	for _, tc := range []struct {
		name   string
		r      Router
		addr   string
		want   string
		code   int
		status string
	}{
		{"single takes everyone", Router{Single: "user"}, "anyone@anywhere.test", "user", 0, ""},
		{"user by local part", Router{Users: func() Directory { return users }}, "Alice@Example.org", "alice", 0, ""},
		{"unknown rejected", Router{Users: func() Directory { return users }}, "carol@example.org", "", 550, "5.1.1"},
		{"catch-all", Router{Users: func() Directory { return users }, CatchAll: "bob"}, "carol@example.org", "bob", 0, ""},
		{"foreign domain", Router{Users: func() Directory { return users }, Domains: []string{"example.org"}}, "alice@other.test", "", 550, "5.7.1"},
		{"listed domain any case", Router{Users: func() Directory { return users }, Domains: []string{"example.org"}}, "alice@EXAMPLE.org", "alice", 0, ""},
		{"quoted local part", Router{Users: func() Directory { return users }}, `"alice"@example.org`, "alice", 0, ""},
		{"postmaster without domain", Router{Users: func() Directory { return users }, CatchAll: "bob", Domains: []string{"example.org"}}, "postmaster", "bob", 0, ""},
		{"empty local part", Router{Single: "user"}, "@example.org", "", 501, "5.1.3"},
		{"postmaster falls back (RFC 5321 §4.5.1)", Router{Users: func() Directory { return users }, Postmaster: func() string { return "alice" }}, "PostMaster@example.org", "alice", 0, ""},
		{"postmaster user wins", Router{Users: func() Directory { return dir{"postmaster": "pm"} }, Postmaster: func() string { return "alice" }}, "postmaster", "pm", 0, ""},
		{"only postmaster falls back", Router{Users: func() Directory { return users }, Postmaster: func() string { return "alice" }}, "carol@example.org", "", 550, "5.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.Route(tc.addr)
			if tc.code == 0 {
				if err != nil || got != tc.want {
					t.Fatalf("Route(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
				}
				return
			}
			var se *smtp.Error
			if !errors.As(err, &se) || se.Code != tc.code || se.Enhanced != tc.status {
				t.Fatalf("Route(%q) = %q, %v; want %d %s", tc.addr, got, err, tc.code, tc.status)
			}
		})
	}
}

func TestTraceHeader(t *testing.T) {
	when := time.Date(2026, 11, 25, 21, 32, 12, 0, time.FixedZone("", -5*3600))
	env := &smtp.Envelope{
		Conn: smtp.ConnInfo{RemoteIP: netip.MustParseAddr("192.0.2.7")},
		Helo: "client.example.com", ESMTP: true, From: "alice@example.com", To: []string{"bob@example.com"},
	}
	got := TraceHeader(env, "mx.test", "ID1", when)
	want := "Return-Path: <alice@example.com>\r\n" +
		"Received: from client.example.com ([192.0.2.7])\r\n" +
		"\tby mx.test (Postoffice) with ESMTP id ID1\r\n" +
		"\tfor <bob@example.com>; Wed, 25 Nov 2026 21:32:12 -0500\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}

	env.To = append(env.To, "carol@example.com")
	env.From = ""
	env.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
	env.AuthUser = "alice"
	env.Conn.RemoteIP = netip.MustParseAddr("::1")
	env.Helo = "evil\r\nX-Injected: yes (;"
	got = TraceHeader(env, "mx.test", "ID2", when)
	for _, s := range []string{"Return-Path: <>\r\n", "with ESMTPSA id ID2", "([IPv6:::1])", "(using TLSv1.3)"} {
		if !strings.Contains(got, s) {
			t.Errorf("missing %q in %q", s, got)
		}
	}
	if strings.Contains(got, "for <") {
		t.Errorf("for clause with two recipients: %q", got)
	}
	if strings.Contains(got, "\r\nX-Injected") || strings.Count(got, "\r\n") != 4 {
		t.Errorf("HELO text broke the header: %q", got)
	}

	env.ESMTP = false
	env.TLS, env.AuthUser = nil, ""
	if got := TraceHeader(env, "h", "i", when); !strings.Contains(got, "with SMTP id") {
		t.Errorf("HELO session: %q", got)
	}
	env.ESMTP, env.SMTPUTF8 = true, true
	if got := TraceHeader(env, "h", "i", when); !strings.Contains(got, "with UTF8SMTP id") {
		t.Errorf("SMTPUTF8 session: %q", got)
	}
}

// A recipient removed from the users file between RCPT and the end of DATA
// used to fail the whole message with the router's 550 5.1.1, bouncing it
// for every other recipient too; it is now a temporary 451 and nothing is
// stored.
func TestDataRecipientGoneAfterRcptIsTemporary(t *testing.T) {
	st, err := maildir.New(t.TempDir(), maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	users := dir{"alice": "alice", "bob": "bob"}
	b := &SMTP{Store: st, Router: &Router{Users: func() Directory { return users }}, Hostname: "mx.test"}
	env := &smtp.Envelope{Conn: smtp.ConnInfo{ID: "C1"}, To: []string{"alice@x", "bob@x"}}
	delete(users, "bob") // the users file was reloaded after RCPT
	_, err = b.Data(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
	var se *smtp.Error
	if !errors.As(err, &se) || se.Code != 451 || se.Enhanced != "4.3.0" {
		t.Fatalf("Data = %v, want 451 4.3.0", err)
	}
	for _, mb := range []string{"alice", "bob"} {
		md, err := st.OpenMaildrop(mb)
		if err != nil {
			t.Fatal(err)
		}
		n := len(md.Messages())
		md.Close()
		if n != 0 {
			t.Fatalf("%s has %d messages", mb, n)
		}
	}
}

// A HELO argument with octets that are not UTF-8 used to be copied into the
// Received field as they were, making our own header invalid text.
func TestTraceHeaderInvalidUTF8Helo(t *testing.T) {
	env := &smtp.Envelope{Helo: "bad\xff\xfe.example", ESMTP: true, From: "a\xc3@b"}
	got := TraceHeader(env, "mx.test", "ID", time.Unix(0, 0).UTC())
	if !utf8.ValidString(got) {
		t.Fatalf("trace header is not UTF-8: %q", got)
	}
	if !strings.Contains(got, "from bad_.example (") {
		t.Fatalf("HELO not kept readable: %q", got)
	}
	env.Helo = "héllo.example" // valid UTF-8 stays as it is
	if got := TraceHeader(env, "mx.test", "ID", time.Unix(0, 0).UTC()); !strings.Contains(got, "from héllo.example (") {
		t.Fatalf("valid UTF-8 changed: %q", got)
	}
}
