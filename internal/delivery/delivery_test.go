package delivery

import (
	"crypto/tls"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"postoffice/internal/smtp"
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
