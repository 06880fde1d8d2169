package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/auth"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
)

// env is a web inbox over a real Maildir, served on a loopback listener.
type env struct {
	t   *testing.T
	st  *maildir.Maildir
	h   *Handler
	srv *httptest.Server
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	st, err := maildir.New(t.TempDir(), maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	x := index.New(st, index.Options{})
	t.Cleanup(x.Close)
	opts.Store = x
	if opts.Users == nil {
		u := auth.SingleUser("user", "pass")
		opts.Users = func() *auth.Users { return u }
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	return &env{t: t, st: st, h: h, srv: srv}
}

// deliver stores raw in mailbox and returns its id.
func (e *env) deliver(mailbox, raw string) string {
	e.t.Helper()
	id := e.st.NewID()
	if err := e.st.Deliver(context.Background(), id, []string{mailbox}, strings.NewReader(raw)); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// client is a browser: a cookie jar and the session's CSRF token.
type client struct {
	e    *env
	hc   *http.Client
	csrf string
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	c := &client{e: e, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	var s sessionInfo
	c.mustJSON("GET", "/api/v1/session", nil, 200, &s)
	c.csrf = s.CSRFToken
	return c
}

// do sends a request with the CSRF token (unless csrf is false) and
// returns the response with its body read.
func (c *client) do(method, path string, body any, csrf bool) (*http.Response, []byte) {
	c.e.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, c.e.srv.URL+path, r)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf {
		req.Header.Set(csrfHeader, c.csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// mustJSON sends a request, checks the status and decodes the JSON answer
// into out (when non-nil). Error answers must be {"error": "..."}.
func (c *client) mustJSON(method, path string, body any, code int, out any) *http.Response {
	c.e.t.Helper()
	resp, b := c.do(method, path, body, method != "GET")
	if resp.StatusCode != code {
		c.e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, code, b)
	}
	if code >= 400 {
		var e struct{ Error string }
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
			c.e.t.Fatalf("%s %s: error body %q is not {\"error\": ...}", method, path, b)
		}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp
}

type listJSON struct {
	Total    int           `json:"total"`
	Page     int           `json:"page"`
	PerPage  int           `json:"per_page"`
	Messages []summaryJSON `json:"messages"`
}

func simple(from, to, subject, body string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\n\r\n" + body + "\r\n"
}

func TestMailboxesAndListing(t *testing.T) {
	e := newEnv(t, Options{})
	var ids []string
	for i := range 3 {
		ids = append(ids, e.deliver("user", simple("alice@example.com", "user@example.com", fmt.Sprintf("hello %d", i), "hi")))
	}
	e.deliver("bob", simple("carol@example.com", "bob@example.com", "for bob", "x"))
	c := e.client()
	var mbs struct{ Mailboxes []mailboxJSON }
	c.mustJSON("GET", "/api/v1/mailboxes", nil, 200, &mbs)
	if len(mbs.Mailboxes) != 2 || mbs.Mailboxes[0].Name != "bob" || mbs.Mailboxes[1].Name != "user" ||
		mbs.Mailboxes[1].Messages != 3 || mbs.Mailboxes[1].Unread != 3 || mbs.Mailboxes[1].Size == 0 {
		t.Fatalf("mailboxes = %+v", mbs.Mailboxes)
	}
	var l listJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages", nil, 200, &l)
	if l.Total != 3 || len(l.Messages) != 3 {
		t.Fatalf("list = %+v", l)
	}
	// Newest first.
	for i, m := range l.Messages {
		if m.ID != ids[2-i] || m.Subject != fmt.Sprintf("hello %d", 2-i) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	m := l.Messages[0]
	if m.From != "alice@example.com" || len(m.To) != 1 || m.To[0] != "user@example.com" || m.Read ||
		m.Date == nil || m.Date.Year() != 2024 || m.Size == 0 || m.Attachments {
		t.Fatalf("summary = %+v", m)
	}
	// A new arrival shows at once (the index follows deliveries).
	id := e.deliver("user", simple("dave@example.com", "user@example.com", "late", "x"))
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages", nil, 200, &l)
	if l.Total != 4 || l.Messages[0].ID != id {
		t.Fatalf("after delivery: %+v", l)
	}
	// A mailbox that does not exist yet is empty, not an error.
	c.mustJSON("GET", "/api/v1/mailboxes/nobody/messages", nil, 200, &l)
	if l.Total != 0 || l.Messages == nil {
		t.Fatalf("empty mailbox: %+v", l)
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t, Options{})
	for i := range 7 {
		e.deliver("user", simple("a@x", "b@y", fmt.Sprint("m", i), "x"))
	}
	c := e.client()
	for _, tc := range []struct {
		q          string
		n          int
		first      string
		page, size int
	}{
		{"", 7, "m6", 1, 50},
		{"?per_page=3", 3, "m6", 1, 3},
		{"?per_page=3&page=2", 3, "m3", 2, 3},
		{"?per_page=3&page=3", 1, "m0", 3, 3},
		{"?per_page=3&page=4", 0, "", 4, 3},
		{"?per_page=7", 7, "m6", 1, 7},
		{"?per_page=500&page=1", 7, "m6", 1, 500},
	} {
		var l listJSON
		c.mustJSON("GET", "/api/v1/mailboxes/user/messages"+tc.q, nil, 200, &l)
		if l.Total != 7 || len(l.Messages) != tc.n || l.Page != tc.page || l.PerPage != tc.size {
			t.Fatalf("%s: %+v", tc.q, l)
		}
		if tc.n > 0 && l.Messages[0].Subject != tc.first {
			t.Fatalf("%s: first = %q, want %q", tc.q, l.Messages[0].Subject, tc.first)
		}
	}
	for _, q := range []string{"?page=0", "?page=-1", "?page=x", "?per_page=0", "?per_page=501", "?per_page=1.5", "?page=99999999999999999999"} {
		c.mustJSON("GET", "/api/v1/mailboxes/user/messages"+q, nil, 400, nil)
	}
}

const multipartMsg = "Return-Path: <sender@example.org>\r\n" +
	"Received: from client by test with ESMTP id x\r\n\tfor <user@example.com>; Mon, 06 May 2024 10:00:00 +0000\r\n" +
	"From: =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.org>\r\n" +
	"To: user@example.com\r\nCc: boss@example.com\r\n" +
	"Subject: =?ISO-8859-1?Q?Caf=E9?= report\r\n" +
	"Date: Tue, 07 May 2024 09:00:00 +0200\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
	"--outer\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n" +
	"--rel\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
	"--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
	"Bonjour, voil=E0 le rapport. zebracorn\r\n" +
	"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
	"<p onclick=\"steal()\">Bonjour <b>there</b></p><script>window.parent.pwned=1</script>" +
	"<img id=\"remote\" src=\"http://remote.invalid/pixel.gif\"><img id=\"inline\" src=\"cid:logo@x\">\r\n" +
	"--alt--\r\n" +
	"--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
	"iVBORw0KGgo=\r\n" +
	"--rel--\r\n" +
	"--outer\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
	"JVBERi0xLjQKJcOkw7zDtsOfCg==\r\n" +
	"--outer--\r\n"

func TestMessageView(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.deliver("user", multipartMsg)
	c := e.client()
	var m messageJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id, nil, 200, &m)
	if m.ID != id || m.Subject != "Café report" || m.From != "Élodíe <elodie@example.org>" {
		t.Fatalf("summary: %+v", m.summaryJSON)
	}
	if m.Envelope.ReturnPath != "sender@example.org" || len(m.Envelope.Recipients) != 1 || m.Envelope.Recipients[0] != "user@example.com" {
		t.Fatalf("envelope: %+v", m.Envelope)
	}
	if len(m.Cc) != 1 || m.Cc[0] != "<boss@example.com>" {
		t.Fatalf("cc: %q", m.Cc)
	}
	if !strings.Contains(m.Text, "voilà le rapport") {
		t.Fatalf("text not decoded to UTF-8: %q", m.Text)
	}
	if strings.Contains(m.HTML, "script") || strings.Contains(m.HTML, "onclick") || strings.Contains(m.HTML, "remote.invalid") {
		t.Fatalf("html not sanitized: %q", m.HTML)
	}
	if !strings.Contains(m.HTML, "/api/v1/mailboxes/user/messages/"+id+"/parts/1.2") || !m.RemoteContent {
		t.Fatalf("html cid/remote: %q remote=%v", m.HTML, m.RemoteContent)
	}
	if len(m.Attachments) != 2 || m.Attachments[1].Filename != "report.pdf" || m.Attachments[1].Path != "2" ||
		m.Attachments[1].ContentType != "application/pdf" || m.Attachments[0].ContentID != "logo@x" || !m.Attachments[1].isAttachment() {
		t.Fatalf("attachments: %+v", m.Attachments)
	}
	if m.Parts == nil || m.Parts.ContentType != "multipart/mixed" || len(m.Parts.Parts) != 2 ||
		m.Parts.Parts[0].Parts[0].Parts[1].Path != "1.1.2" {
		t.Fatalf("part tree: %+v", m.Parts)
	}
	if len(m.Headers) == 0 || m.Headers[0].Name != "Return-Path" {
		t.Fatalf("headers: %+v", m.Headers)
	}
	// The list knows of the attachment.
	var l listJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages", nil, 200, &l)
	if !l.Messages[0].Attachments {
		t.Fatal("listing: attachments = false")
	}
}

func (p *Part) isAttachment() bool { return p.Disposition == "attachment" }

func TestRawPartsAndHTML(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.deliver("user", multipartMsg)
	c := e.client()
	base := "/api/v1/mailboxes/user/messages/" + id

	resp, body := c.do("GET", base+"/raw", nil, false)
	file, _ := os.ReadFile(filepath.Join(e.st.Root(), "user", "new", id+".eml"))
	if resp.StatusCode != 200 || string(body) != string(file) || resp.Header.Get("Content-Type") != "message/rfc822" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), id+".eml") {
		t.Fatalf("raw: %d %v", resp.StatusCode, resp.Header)
	}

	resp, body = c.do("GET", base+"/parts/2", nil, false)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename=report.pdf` || !strings.HasPrefix(string(body), "%PDF-1.4") {
		t.Fatalf("part 2: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, body = c.do("GET", base+"/parts/1.1.1", nil, false)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.Contains(string(body), "voilà") {
		t.Fatalf("part 1.1.1: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, _ = c.do("GET", base+"/parts/1.2", nil, false)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "inline") {
		t.Fatalf("part 1.2: %d %v", resp.StatusCode, resp.Header)
	}
	for _, p := range []string{"3", "0", "1", "1.1", "2.1", "01", "a", "1..2", "99999999999"} {
		c.mustJSON("GET", base+"/parts/"+p, nil, 404, nil)
	}

	resp, body = c.do("GET", base+"/html", nil, false)
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "img-src 'self' data:") ||
		strings.Contains(csp, "script") || !strings.Contains(csp, "sandbox") {
		t.Fatalf("html: %d csp %q", resp.StatusCode, csp)
	}
	if strings.Contains(string(body), "<script") || strings.Contains(string(body), "remote.invalid") ||
		!strings.Contains(string(body), "/parts/1.2") || !strings.Contains(string(body), "<b>there</b>") {
		t.Fatalf("html body: %s", body)
	}
	resp, body = c.do("GET", base+"/html?remote=1", nil, false)
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "img-src * data:") ||
		!strings.Contains(string(body), "http://remote.invalid/pixel.gif") || strings.Contains(string(body), "<script") {
		t.Fatalf("html remote: %v %s", resp.Header, body)
	}
	// A message without HTML has no HTML view.
	plain := e.deliver("user", simple("a@x", "b@y", "plain", "text only"))
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+plain+"/html", nil, 404, nil)
}

func TestBrokenMail(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	for _, tc := range []struct {
		name, raw, subject, text string
	}{
		{"no blank line", "Subject: Test Email\nHello Bob,\nhow are you?\n", "Test Email", "Hello Bob,"},
		{"no header", "just a body line\n", "", "just a body line"},
		{"unknown charset", "Subject: x\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla\r\n", "x", "qapla"},
		{"bad encoded word", "Subject: =?x-nope?Q?abc?=\r\n\r\nbody\r\n", "=?x-nope?Q?abc?=", "body"},
		{"latin1 8bit", "Subject: s\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n", "s", "café"},
		{"invalid utf-8", "Subject: s\r\n\r\nbad \xff\xfe bytes\r\n", "s", "bad \uFFFD"},
		{"broken multipart", "Subject: m\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\npartial body", "m", "partial body"},
		{"headers only", "Subject: only\r\nFrom: a@b", "only", ""},
	} {
		id := e.deliver("user", tc.raw)
		var m messageJSON
		c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id, nil, 200, &m)
		if m.Subject != tc.subject || !strings.Contains(m.Text, tc.text) {
			t.Errorf("%s: subject %q text %q; problems %q", tc.name, m.Subject, m.Text, m.Problems)
		}
		resp, _ := c.do("GET", "/api/v1/mailboxes/user/messages/"+id+"/raw", nil, false)
		if resp.StatusCode != 200 {
			t.Errorf("%s: raw %d", tc.name, resp.StatusCode)
		}
	}
	var l listJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages?q=subject:%22test+email%22", nil, 200, &l)
	if l.Total != 1 {
		t.Fatalf("search in broken mail: %+v", l)
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, Options{})
	e.deliver("user", simple("Alice <alice@example.com>", "user@example.com", "Invoice May", "pay me"))
	e.deliver("user", simple("bob@example.net", "other@example.com", "Lunch?", "pizza at noon"))
	big := e.deliver("user", simple("carol@example.org", "user@example.com", "Big one", strings.Repeat("y", 20000)))
	b64 := e.deliver("user", "From: dan@example.com\r\nSubject: encoded\r\nContent-Type: text/plain\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\nc2VjcmV0IHdvcmQ6IHBlbmd1aW4=\r\n")
	c := e.client()
	var m summaryJSON
	c.mustJSON("PATCH", "/api/v1/mailboxes/user/messages/"+big, map[string]bool{"read": true}, 200, &m)
	future := time.Now().Add(48 * time.Hour).UTC().Format("2006-01-02")
	for _, tc := range []struct {
		q    string
		want []string // subjects, newest first
	}{
		{"from:alice", []string{"Invoice May"}},
		{"alice", []string{"Invoice May"}},
		{"INVOICE", []string{"Invoice May"}},
		{"to:other", []string{"Lunch?"}},
		{"subject:lunch", []string{"Lunch?"}},
		{"text:pizza", []string{"Lunch?"}},
		{"text:penguin", []string{"encoded"}},
		{"body:nothing-like-this", nil},
		{"larger:10K", []string{"Big one"}},
		{"smaller:10K from:example", []string{"encoded", "Lunch?", "Invoice May"}},
		{"is:read", []string{"Big one"}},
		{"is:unread to:user", []string{"Invoice May"}},
		{"before:2000-01-01", nil},
		{"after:2000-01-01 before:" + future + " subject:encoded", []string{"encoded"}},
		{`subject:"invoice may"`, []string{"Invoice May"}},
		{"example.com user", []string{"Big one", "Invoice May"}},
	} {
		var l listJSON
		c.mustJSON("GET", "/api/v1/mailboxes/user/messages?q="+urlQuery(tc.q), nil, 200, &l)
		var got []string
		for _, m := range l.Messages {
			got = append(got, m.Subject)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || l.Total != len(tc.want) {
			t.Errorf("q=%q: got %q (total %d), want %q", tc.q, got, l.Total, tc.want)
		}
	}
	_ = b64
	for _, q := range []string{"color:red", "larger:huge", "after:yesterday", "is:maybe"} {
		c.mustJSON("GET", "/api/v1/mailboxes/user/messages?q="+urlQuery(q), nil, 400, nil)
	}
}

func urlQuery(s string) string {
	r := strings.NewReplacer(" ", "+", `"`, "%22", ":", "%3A")
	return r.Replace(s)
}

func TestDeleteAndPOP3Lock(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.deliver("user", simple("a@x", "b@y", "a", "x"))
	b := e.deliver("user", simple("a@x", "b@y", "b", "x"))
	d := e.deliver("user", simple("a@x", "b@y", "d", "x"))
	c := e.client()

	// A POP3 session holds the maildrop: the API must not delete (409).
	md, err := e.st.OpenMaildrop("user")
	if err != nil {
		t.Fatal(err)
	}
	c.mustJSON("DELETE", "/api/v1/mailboxes/user/messages/"+a, nil, 409, nil)
	c.mustJSON("DELETE", "/api/v1/mailboxes/user/messages", map[string]any{"ids": []string{a}}, 409, nil)
	if _, err := os.Stat(filepath.Join(e.st.Root(), "user", "new", a+".eml")); err != nil {
		t.Fatal("message deleted under a POP3 lock:", err)
	}
	md.Close()

	resp, _ := c.do("DELETE", "/api/v1/mailboxes/user/messages/"+a, nil, true)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(e.st.Root(), "user", "new", a+".eml")); !os.IsNotExist(err) {
		t.Fatal("file still there:", err)
	}
	c.mustJSON("DELETE", "/api/v1/mailboxes/user/messages/"+a, nil, 404, nil)
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+a, nil, 404, nil)
	// The lock was released: POP3 can log in again.
	md, err = e.st.OpenMaildrop("user")
	if err != nil {
		t.Fatal("lock kept after the request:", err)
	}
	if n := len(md.Messages()); n != 2 {
		t.Fatalf("POP3 sees %d messages, want 2", n)
	}
	md.Close()

	var res struct {
		Deleted  []string `json:"deleted"`
		NotFound []string `json:"not_found"`
	}
	c.mustJSON("DELETE", "/api/v1/mailboxes/user/messages", map[string]any{"ids": []string{b, a}}, 200, &res)
	if fmt.Sprint(res.Deleted) != fmt.Sprint([]string{b}) || fmt.Sprint(res.NotFound) != fmt.Sprint([]string{a}) {
		t.Fatalf("delete many: %+v", res)
	}
	e.deliver("user", simple("a@x", "b@y", "e", "x"))
	c.mustJSON("DELETE", "/api/v1/mailboxes/user/messages", map[string]any{"all": true}, 200, &res)
	if len(res.Deleted) != 2 || res.Deleted[1] != d {
		t.Fatalf("delete all: %+v", res)
	}
	var l listJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages", nil, 200, &l)
	if l.Total != 0 {
		t.Fatalf("after delete all: %+v", l)
	}
	for _, body := range []any{map[string]any{}, map[string]any{"ids": []string{"../x"}}, map[string]any{"ids": []string{a}, "all": true}, "nope"} {
		c.mustJSON("DELETE", "/api/v1/mailboxes/user/messages", body, 400, nil)
	}
}

func TestMarkRead(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.deliver("user", simple("a@x", "b@y", "s", "body"))
	md, _ := e.st.OpenMaildrop("user")
	before := md.Messages()
	md.Close()
	c := e.client()
	var m summaryJSON
	c.mustJSON("PATCH", "/api/v1/mailboxes/user/messages/"+id, map[string]bool{"read": true}, 200, &m)
	if !m.Read || m.ID != id {
		t.Fatalf("patch: %+v", m)
	}
	dir := filepath.Join(e.st.Root(), "user")
	if _, err := os.Stat(filepath.Join(dir, "cur", id+".eml:2,S")); err != nil {
		t.Fatal("not moved to cur/ with :2,S:", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new", id+".eml")); !os.IsNotExist(err) {
		t.Fatal("still in new/:", err)
	}
	// POP3 sees the same UIDL and size.
	md, err := e.st.OpenMaildrop("user")
	if err != nil {
		t.Fatal(err)
	}
	after := md.Messages()
	md.Close()
	if len(after) != 1 || after[0] != before[0] {
		t.Fatalf("POP3 listing changed: %+v -> %+v", before, after)
	}
	var l listJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages", nil, 200, &l)
	if !l.Messages[0].Read {
		t.Fatal("listing: read = false")
	}
	c.mustJSON("PATCH", "/api/v1/mailboxes/user/messages/"+id, map[string]bool{"read": false}, 200, &m)
	if m.Read {
		t.Fatal("still read")
	}
	if _, err := os.Stat(filepath.Join(dir, "cur", id+".eml:2,")); err != nil {
		t.Fatal("unread file:", err)
	}
	// A flag set by a mail reader (F) is kept.
	os.Rename(filepath.Join(dir, "cur", id+".eml:2,"), filepath.Join(dir, "cur", id+".eml:2,F"))
	c.mustJSON("PATCH", "/api/v1/mailboxes/user/messages/"+id, map[string]bool{"read": true}, 200, &m)
	if _, err := os.Stat(filepath.Join(dir, "cur", id+".eml:2,FS")); err != nil {
		t.Fatal("flags not kept:", err)
	}
	c.mustJSON("PATCH", "/api/v1/mailboxes/user/messages/"+id, map[string]string{"read": "yes"}, 400, nil)
	c.mustJSON("PATCH", "/api/v1/mailboxes/user/messages/"+id, map[string]bool{}, 400, nil)
	c.mustJSON("PATCH", "/api/v1/mailboxes/user/messages/nope", map[string]bool{"read": true}, 404, nil)
}

func TestPathTraversalAndBadIDs(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.deliver("user", simple("a@x", "b@y", "s", "body"))
	// A file outside every mailbox that a traversal would reach.
	os.WriteFile(filepath.Join(e.st.Root(), "secret.eml"), []byte("Subject: secret\r\n\r\nsecret\r\n"), 0o600)
	c := e.client()
	for _, p := range []string{
		"/api/v1/mailboxes/user/messages/..%2Fsecret",
		"/api/v1/mailboxes/user/messages/..%2F..%2Fsecret.eml/raw",
		"/api/v1/mailboxes/user/messages/%2e%2e/raw",
		"/api/v1/mailboxes/user/messages/.hidden/raw",
		"/api/v1/mailboxes/..%2Fuser/messages",
		"/api/v1/mailboxes/%2e%2e/messages",
		"/api/v1/mailboxes/User/messages",
		"/api/v1/mailboxes/user/messages/" + strings.Repeat("a", 71),
		"/api/v1/mailboxes/user/messages/a%5Cb/raw",
		"/api/v1/mailboxes/user/messages/a%00b",
	} {
		resp, body := c.do("GET", p, nil, false)
		if resp.StatusCode != 400 && resp.StatusCode != 404 && resp.StatusCode != 301 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		if strings.Contains(string(body), "secret") {
			t.Errorf("%s: leaked %s", p, body)
		}
	}
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id+"/raw", nil, 200, nil)
	c.mustJSON("GET", "/api/v1/nothing", nil, 404, nil)
	c.mustJSON("PUT", "/api/v1/mailboxes", nil, 405, nil)
	c.mustJSON("POST", "/api/v1/mailboxes/user/messages/"+id, nil, 405, nil)
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.deliver("user", simple("a@x", "b@y", "s", "body"))
	c := e.client()
	path := "/api/v1/mailboxes/user/messages/" + id
	for _, tc := range []struct {
		name  string
		token string
	}{{"none", ""}, {"wrong", flipFirst(c.csrf)}} {
		saved := c.csrf
		c.csrf = tc.token
		for _, req := range []struct {
			method string
			path   string
			body   any
		}{
			{"DELETE", path, nil},
			{"PATCH", path, map[string]bool{"read": true}},
			{"DELETE", "/api/v1/mailboxes/user/messages", map[string]any{"all": true}},
			{"POST", "/api/v1/logout", nil},
		} {
			resp, b := c.do(req.method, req.path, req.body, tc.token != "")
			if resp.StatusCode != 403 || !strings.Contains(string(b), "CSRF") {
				t.Errorf("%s token: %s %s: %d %s", tc.name, req.method, req.path, resp.StatusCode, b)
			}
		}
		c.csrf = saved
	}
	// Another browser's token does not work with this session.
	other := e.client()
	c.csrf, other.csrf = other.csrf, c.csrf
	resp, _ := c.do("DELETE", path, nil, true)
	if resp.StatusCode != 403 {
		t.Fatalf("foreign token: %d", resp.StatusCode)
	}
	// A form post (no JSON) is refused even with the token.
	c.csrf = other.csrf
	req, _ := http.NewRequest("PATCH", e.srv.URL+path, strings.NewReader("read=true"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(csrfHeader, c.csrf)
	r2, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("form post: %d", r2.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(e.st.Root(), "user", "new", id+".eml")); err != nil {
		t.Fatal("message changed by a rejected request:", err)
	}
}

func usersFile(t *testing.T, names ...string) *auth.Users {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(n+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", n, h)
	}
	u, err := auth.ParseUsers(strings.NewReader(b.String()), "users")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestLoginAndIsolation(t *testing.T) {
	u := usersFile(t, "alice", "bob", "root")
	e := newEnv(t, Options{Users: func() *auth.Users { return u }, UsersFile: true, Admin: "root"})
	aid := e.deliver("alice", simple("x@y", "alice@example.com", "for alice", "a"))
	bid := e.deliver("bob", simple("x@y", "bob@example.com", "for bob", "b"))

	anon := e.client()
	var s sessionInfo
	anon.mustJSON("GET", "/api/v1/session", nil, 200, &s)
	if !s.LoginRequired || s.User != "" {
		t.Fatalf("anonymous session: %+v", s)
	}
	anon.mustJSON("GET", "/api/v1/mailboxes", nil, 401, nil)
	anon.mustJSON("GET", "/api/v1/mailboxes/alice/messages/"+aid+"/raw", nil, 401, nil)
	anon.mustJSON("GET", "/api/v1/events", nil, 401, nil)
	anon.mustJSON("POST", "/api/v1/login", map[string]string{"user": "alice", "password": "wrong"}, 401, nil)
	anon.mustJSON("POST", "/api/v1/login", map[string]string{"user": "nobody", "password": "x"}, 401, nil)
	anon.mustJSON("POST", "/api/v1/login", map[string]string{}, 400, nil)

	alice := e.client()
	oldCSRF := alice.csrf
	alice.mustJSON("POST", "/api/v1/login", map[string]string{"user": "Alice", "password": "alice-pw"}, 200, &s)
	if s.User != "alice" || s.Admin || s.CSRFToken == oldCSRF {
		t.Fatalf("login: %+v", s)
	}
	alice.csrf = s.CSRFToken
	var mbs struct{ Mailboxes []mailboxJSON }
	alice.mustJSON("GET", "/api/v1/mailboxes", nil, 200, &mbs)
	if len(mbs.Mailboxes) != 1 || mbs.Mailboxes[0].Name != "alice" || mbs.Mailboxes[0].Messages != 1 {
		t.Fatalf("alice's mailboxes: %+v", mbs)
	}
	alice.mustJSON("GET", "/api/v1/mailboxes/alice/messages/"+aid, nil, 200, nil)
	for _, p := range []string{"/api/v1/mailboxes/bob/messages", "/api/v1/mailboxes/bob/messages/" + bid,
		"/api/v1/mailboxes/bob/messages/" + bid + "/raw", "/api/v1/mailboxes/bob/messages/" + bid + "/parts/1",
		"/api/v1/mailboxes/bob/messages/" + bid + "/html", "/api/v1/events?mailbox=bob"} {
		alice.mustJSON("GET", p, nil, 404, nil)
	}
	alice.mustJSON("DELETE", "/api/v1/mailboxes/bob/messages/"+bid, nil, 404, nil)
	alice.mustJSON("PATCH", "/api/v1/mailboxes/bob/messages/"+bid, map[string]bool{"read": true}, 404, nil)
	// Alice's id does not open in bob's mailbox either way round.
	if _, err := os.Stat(filepath.Join(e.st.Root(), "bob", "new", bid+".eml")); err != nil {
		t.Fatal("bob's message touched:", err)
	}

	root := e.client()
	root.mustJSON("POST", "/api/v1/login", map[string]string{"user": "root", "password": "root-pw"}, 200, &s)
	if !s.Admin {
		t.Fatalf("admin login: %+v", s)
	}
	root.mustJSON("GET", "/api/v1/mailboxes", nil, 200, &mbs)
	if len(mbs.Mailboxes) != 3 { // alice, bob, and root's own (empty)
		t.Fatalf("admin mailboxes: %+v", mbs)
	}
	root.mustJSON("GET", "/api/v1/mailboxes/bob/messages/"+bid, nil, 200, nil)

	// Logout ends the session.
	alice.mustJSON("POST", "/api/v1/logout", nil, 200, &s)
	alice.mustJSON("GET", "/api/v1/mailboxes", nil, 401, nil)
}

func TestLoginThrottled(t *testing.T) {
	u := usersFile(t, "alice")
	thr := auth.NewThrottle(auth.ThrottleConfig{BaseDelay: -1, MaxFailures: 2, Window: time.Minute,
		Exempt: func(netip.Addr) bool { return false }})
	e := newEnv(t, Options{Users: func() *auth.Users { return u }, UsersFile: true, Throttle: thr})
	c := e.client()
	c.mustJSON("POST", "/api/v1/login", map[string]string{"user": "alice", "password": "x"}, 401, nil)
	c.mustJSON("POST", "/api/v1/login", map[string]string{"user": "alice", "password": "y"}, 401, nil)
	// The cap is reached: even the right password is refused now.
	c.mustJSON("POST", "/api/v1/login", map[string]string{"user": "alice", "password": "alice-pw"}, 429, nil)
}

func TestNoLoginOnlyForLoopbackHost(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	c.mustJSON("GET", "/api/v1/mailboxes", nil, 200, nil)
	// A page of another site rebinding its name to 127.0.0.1 sends its own
	// Host: it must log in.
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/mailboxes", nil)
	req.Host = "evil.example:8025"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("rebinding host: %d", resp.StatusCode)
	}
	// A non-local client must log in too (the single user's password).
	e2 := newEnv(t, Options{IsLocal: func(netip.Addr) bool { return false }})
	c2 := e2.client()
	c2.mustJSON("GET", "/api/v1/mailboxes", nil, 401, nil)
	c2.mustJSON("POST", "/api/v1/login", map[string]string{"user": "user", "password": "pass"}, 200, nil)
}

func TestEvents(t *testing.T) {
	u := usersFile(t, "alice", "bob")
	e := newEnv(t, Options{Users: func() *auth.Users { return u }, UsersFile: true})
	alice := e.client()
	var s sessionInfo
	alice.mustJSON("POST", "/api/v1/login", map[string]string{"user": "alice", "password": "alice-pw"}, 200, &s)
	alice.csrf = s.CSRFToken

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/events", nil)
	resp, err := alice.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	next := func() (string, string) {
		t.Helper()
		var ev, data string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal("event stream:", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "" && ev != "":
				return ev, data
			case strings.HasPrefix(line, "event: "):
				ev = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			}
		}
	}
	if ev, _ := next(); ev != "hello" {
		t.Fatalf("first event %q", ev)
	}
	e.deliver("bob", simple("x@y", "bob@x", "not for alice", "b")) // filtered out
	id := e.deliver("alice", simple("x@y", "alice@x", "for alice", "a"))
	ev, data := next()
	if ev != "arrived" || data != `{"mailbox":"alice","ids":["`+id+`"]}` {
		t.Fatalf("arrival: %s %s", ev, data)
	}
	alice.mustJSON("PATCH", "/api/v1/mailboxes/alice/messages/"+id, map[string]bool{"read": true}, 200, nil)
	if ev, _ := next(); ev != "updated" {
		t.Fatalf("after PATCH: %s", ev)
	}
	// A POP3 QUIT that deletes is an event too.
	md, err := e.st.OpenMaildrop("alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Commit([]int{0}); err != nil {
		t.Fatal(err)
	}
	md.Close()
	ev, data = next()
	if ev != "deleted" || !strings.Contains(data, id) {
		t.Fatalf("pop3 deletion: %s %s", ev, data)
	}
	id2 := e.deliver("alice", simple("x@y", "alice@x", "second", "a"))
	next()
	r, _ := alice.do("DELETE", "/api/v1/mailboxes/alice/messages/"+id2, nil, true)
	if r.StatusCode != 204 {
		t.Fatal(r.StatusCode)
	}
	ev, data = next()
	if ev != "deleted" || !strings.Contains(data, id2) {
		t.Fatalf("api deletion: %s %s", ev, data)
	}
	// Close ends the stream (server shutdown must not wait for it).
	e.h.Close()
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatal(err)
	}
}

func TestUI(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	resp, body := c.do("GET", "/", nil, false)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "/static/app.js") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("index: %d %v", resp.StatusCode, resp.Header)
	}
	for _, f := range []string{"app.js", "app.css"} {
		resp, body = c.do("GET", "/static/"+f, nil, false)
		if resp.StatusCode != 200 || len(body) < 100 {
			t.Fatalf("%s: %d", f, resp.StatusCode)
		}
		// No external requests: no absolute URL in the assets.
		// (The SVG namespace name is an identifier, not a request.)
		text := strings.ReplaceAll(string(body), "http://www.w3.org/2000/svg", "")
		if strings.Contains(text, "http://") || strings.Contains(text, "https://") || strings.Contains(text, "//cdn") {
			t.Fatalf("%s refers to another host", f)
		}
	}
}

// flipFirst returns tok with its first character changed.
func flipFirst(tok string) string {
	if tok[0] == 'x' {
		return "y" + tok[1:]
	}
	return "x" + tok[1:]
}
