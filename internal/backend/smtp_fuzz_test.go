package backend

import (
	"crypto/tls"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"postoffice/internal/smtp"
)

// FuzzRoute runs arbitrary recipient addresses through each kind of Router.
// A route is one of the mailboxes the router was given; a refusal is an
// *smtp.Error with 501 or 550 whose text (which quotes the domain) is one
// clean reply line.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"alice@example.org", "Alice@EXAMPLE.org", `"alice"@example.org`, `"a\"b"@x`,
		"postmaster", "PostMaster", "postmaster@other.test", "@example.org", "", "carol@other.test",
		"a@b\r\nX-Injected: 1", "a@ex(am)ple;<>.org", "jö@ü.de", `""@x`, `"@x`, "a@", "@"} {
		f.Add(s)
	}
	users := dir{"alice": "alice", "bob": "bob", "a b": "bob"}
	routers := []Router{
		{Single: "user"},
		{Users: func() Directory { return users }},
		{Users: func() Directory { return users }, CatchAll: "bob"},
		{Users: func() Directory { return users }, Domains: []string{"example.org"}},
		{Single: "user", Domains: []string{"example.org", "ü.de"}},
	}
	f.Fuzz(func(t *testing.T, addr string) {
		for i, r := range routers {
			box, err := r.Route(addr)
			if err == nil {
				if box != "user" && box != "alice" && box != "bob" {
					t.Fatalf("router %d: Route(%q) = %q", i, addr, box)
				}
				if r.Single != "" && box != r.Single {
					t.Fatalf("router %d: Route(%q) = %q, not the single mailbox", i, addr, box)
				}
				continue
			}
			var se *smtp.Error
			if !errors.As(err, &se) || (se.Code != 501 && se.Code != 550) {
				t.Fatalf("router %d: Route(%q): %v", i, addr, err)
			}
			if !cleanText(se.Enhanced+" "+se.Message) || len(se.Message) > 400 {
				t.Fatalf("router %d: Route(%q): reply text %q would break the reply", i, addr, se.Message)
			}
		}
	})
}

// cleanText reports whether s has no control characters (so no CR or LF).
func cleanText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// FuzzTraceHeader builds the Return-Path and Received fields from arbitrary
// client-supplied HELO name, reverse-path and recipients (and every session
// flag) and checks that no input injects a header: the result is exactly
// two fields, each line ends in CRLF, every continuation line starts with a
// tab (the only fold points), no other control character appears, the
// Received field has exactly one ';' (before the date), the bracketed paths
// hold no angle brackets, and valid UTF-8 input stays valid UTF-8.
func FuzzTraceHeader(f *testing.F) {
	f.Add("client.example.com", "alice@example.com", "bob@example.com", "", "192.0.2.7", uint8(1))
	f.Add("evil\r\nX-Injected: yes (;", "", "a@b", "c@d", "::1", uint8(0xff))
	f.Add("x", "a>\r\nBcc: <v@x", "b@c\nX: y", "", "", uint8(2))
	f.Add("h\x00\x7f\t(y)", `"q\"x"@[IPv6:::1]`, "<a@b>;", "", "10.0.0.1", uint8(8))
	f.Add(strings.Repeat("ü", 200), strings.Repeat("é", 200)+"@x", "", "", "1.2.3.4", uint8(4))
	when := time.Date(2026, 11, 25, 21, 32, 12, 0, time.FixedZone("", -5*3600))
	f.Fuzz(func(t *testing.T, helo, from, to1, to2, ip string, flags uint8) {
		env := &smtp.Envelope{Helo: helo, From: from, ESMTP: flags&1 != 0, SMTPUTF8: flags&2 != 0, To: []string{to1}}
		if to2 != "" {
			env.To = append(env.To, to2)
		}
		if flags&4 != 0 {
			env.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
		}
		if flags&8 != 0 {
			env.AuthUser = helo
		}
		// The IP comes from the socket, not the client; a zone is the
		// kernel's interface name.
		addr, _ := netip.ParseAddr(ip)
		env.Conn.RemoteIP = addr.WithZone("")
		h := TraceHeader(env, "mx.test", "18a2b3c4d5e6f708.9f3e0a11.0000002a", when)

		if !strings.HasSuffix(h, "\r\n") {
			t.Fatalf("header does not end in CRLF: %q", h)
		}
		lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "Return-Path: <") || !strings.HasSuffix(lines[0], ">") ||
			!strings.HasPrefix(lines[1], "Received: from ") {
			t.Fatalf("not a Return-Path and a Received field: %q", h)
		}
		for i, l := range lines {
			if i >= 2 && !strings.HasPrefix(l, "\t") {
				t.Fatalf("line %d starts a new field (header injection): %q in %q", i, l, h)
			}
			body := l
			if i >= 2 {
				body = l[1:]
			}
			if !cleanText(body) {
				t.Fatalf("control character in line %d: %q", i, l)
			}
		}
		if p := lines[0][len("Return-Path: <") : len(lines[0])-1]; strings.ContainsAny(p, "<>") {
			t.Fatalf("Return-Path path %q holds angle brackets", p)
		}
		received := strings.Join(lines[1:], "\r\n")
		if strings.Count(received, ";") != 1 || !strings.HasSuffix(received, "; Wed, 25 Nov 2026 21:32:12 -0500") {
			t.Fatalf("Received field has a stray ';' or lost its date: %q", received)
		}
		if i := strings.Index(received, "\tfor <"); i >= 0 {
			if len(env.To) != 1 {
				t.Fatalf("for clause with %d recipients", len(env.To))
			}
			p := received[i+len("\tfor <"):]
			p = p[:strings.Index(p, ">; ")]
			if strings.ContainsAny(p, "<>") {
				t.Fatalf("for path %q holds angle brackets", p)
			}
		} else if len(env.To) == 1 {
			t.Fatalf("no for clause with one recipient: %q", h)
		}
		if utf8.ValidString(helo) && utf8.ValidString(from) && utf8.ValidString(to1) && utf8.ValidString(to2) && !utf8.ValidString(h) {
			t.Fatalf("valid UTF-8 input made an invalid UTF-8 header: %q", h)
		}
	})
}

// TestTraceHeaderLongUTF8NotCutMidCharacter is the regression test for a
// bug FuzzTraceHeader found: sanitize cut client text longer than 255 octets
// at a byte count, so a long UTF-8 HELO name or SMTPUTF8 address ended the
// Received field with half a character (invalid UTF-8).
func TestTraceHeaderLongUTF8NotCutMidCharacter(t *testing.T) {
	env := &smtp.Envelope{Helo: strings.Repeat("ü", 200), From: "a" + strings.Repeat("é", 200) + "@x", To: []string{"b@c"}}
	h := TraceHeader(env, "mx.test", "ID", time.Unix(0, 0))
	if !utf8.ValidString(h) {
		t.Fatalf("invalid UTF-8 header: %q", h)
	}
	if !strings.Contains(h, "from "+strings.Repeat("ü", 127)+" (") {
		t.Fatalf("HELO name not cut to 127 whole characters: %q", h)
	}
}
