package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// apiClient is a JSON API client of a whole server, with a session.
type apiClient struct {
	t    *testing.T
	s    *Server
	hc   *http.Client
	csrf string
}

func newAPIClient(t *testing.T, s *Server) *apiClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &apiClient{t: t, s: s, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	var sess struct {
		CSRF string `json:"csrf_token"`
	}
	c.call("GET", "/api/v1/session", nil, 200, &sess)
	c.csrf = sess.CSRF
	return c
}

// login logs in as user with password pass.
func (c *apiClient) login(user, pass string) {
	c.t.Helper()
	var sess struct {
		CSRF string `json:"csrf_token"`
	}
	c.call("POST", "/api/v1/login", map[string]string{"user": user, "password": pass}, 200, &sess)
	c.csrf = sess.CSRF
}

// do sends a request with the CSRF token and a JSON body (a string is
// sent as it is) and returns the status and the body.
func (c *apiClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.s.testURL(path), r)
	if err != nil {
		c.t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-CSRF-Token", c.csrf)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// call is do that wants status code and decodes the answer into out.
func (c *apiClient) call(method, path string, body any, code int, out any) {
	c.t.Helper()
	got, data := c.do(method, path, body)
	if got != code {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, got, data, code)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

type sendAnswer struct {
	ID        string   `json:"id"`
	Mailboxes []string `json:"mailboxes"`
	MessageID string   `json:"message_id"`
}

type apiError struct {
	Error     string `json:"error"`
	Recipient string `json:"recipient"`
	Stage     string `json:"stage"`
	SMTP      *struct {
		Code     int    `json:"code"`
		Enhanced string `json:"enhanced"`
		Message  string `json:"message"`
	} `json:"smtp"`
}

// raw returns the stored message id of mailbox mb, as /raw serves it.
func (c *apiClient) raw(mb, id string) []byte {
	c.t.Helper()
	code, data := c.do("GET", "/api/v1/mailboxes/"+mb+"/messages/"+id+"/raw", nil)
	if code != 200 {
		c.t.Fatalf("raw %s/%s: %d %s", mb, id, code, data)
	}
	return data
}

// pop3Retr logs in over POP3 and returns the LIST size and the RETR
// content (dot-unstuffed, CRLF lines) of the one message of the maildrop.
func pop3Retr(t *testing.T, s *Server, user, pass string) (int, []byte) {
	t.Helper()
	c := testsupport.Dial(t, s.Listener("pop3").Addr().String())
	c.POP3Login(user, pass)
	list := c.Cmd("LIST 1", "+OK 1 *").Last()
	size, err := strconv.Atoi(strings.Fields(list)[2])
	if err != nil {
		t.Fatalf("LIST: %q", list)
	}
	c.Send("RETR 1\r\n")
	body := c.ExpectMulti("+OK*")
	c.Cmd("QUIT", "+OK*")
	var b bytes.Buffer
	for _, l := range body {
		b.WriteString(l + "\r\n")
	}
	return size, b.Bytes()
}

// traceFields checks the Return-Path and Received fields that delivery
// put first in raw and returns the rest.
func traceFields(t *testing.T, raw []byte, from, id string) []byte {
	t.Helper()
	rp := "Return-Path: <" + from + ">\r\n"
	if !bytes.HasPrefix(raw, []byte(rp)) {
		t.Fatalf("message does not start with %q: %q", rp, raw[:min(len(raw), 200)])
	}
	rest := raw[len(rp):]
	end := bytes.Index(rest, []byte("\r\n"))
	for end >= 0 && end+2 < len(rest) && (rest[end+2] == '\t' || rest[end+2] == ' ') {
		next := bytes.Index(rest[end+2:], []byte("\r\n"))
		end += 2 + next
	}
	received := string(rest[:end])
	if !testsupport.Glob("Received: from [127.0.0.1] ([127.0.0.1])\r\n\tby mx.test (Postoffice) with HTTP id "+id+"*; *", received) {
		t.Errorf("Received = %q", received)
	}
	return rest[end+2:]
}

// TestSendBuildsMIME sends a text message, a text and HTML one and one
// with attachments through POST /api/v1/send, and reads each back: the
// stored message parsed with go-message has the structure and headers
// asked for behind our trace fields, and POP3 reports its exact size and
// serves the same octets.
func TestSendBuildsMIME(t *testing.T) {
	pdf := []byte("%PDF-1.4\x00\xff\xfe binary \r\n\x80 data")
	for _, tc := range []struct {
		name  string
		req   map[string]any
		check func(t *testing.T, e *message.Entity)
	}{
		{"text", map[string]any{"text": "Hello,\nplain world.\n"}, func(t *testing.T, e *message.Entity) {
			mt, params, _ := e.Header.ContentType()
			if mt != "text/plain" || params["charset"] != "utf-8" {
				t.Errorf("Content-Type %s %v", mt, params)
			}
			body, _ := io.ReadAll(e.Body)
			if string(body) != "Hello,\r\nplain world.\r\n" {
				t.Errorf("body %q", body)
			}
		}},
		{"html", map[string]any{"html": "<p>only</p>"}, func(t *testing.T, e *message.Entity) {
			mt, params, _ := e.Header.ContentType()
			body, _ := io.ReadAll(e.Body)
			if mt != "text/html" || params["charset"] != "utf-8" || string(body) != "<p>only</p>\r\n" || e.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
				t.Errorf("Content-Type %s %v, body %q", mt, params, body)
			}
		}},
		{"html and text", map[string]any{"text": "plain", "html": "<p>Grüße</p>"}, func(t *testing.T, e *message.Entity) {
			if mt, _, _ := e.Header.ContentType(); mt != "multipart/alternative" {
				t.Fatalf("Content-Type %s", mt)
			}
			parts := readParts(t, e)
			if len(parts) != 2 || parts[0].ct != "text/plain" || parts[0].body != "plain" || parts[1].ct != "text/html" || parts[1].body != "<p>Grüße</p>" {
				t.Errorf("parts %+v", parts)
			}
		}},
		{"attachments", map[string]any{"text": "see attached", "html": "<b>see</b>", "attachments": []map[string]string{
			{"filename": "report.pdf", "content_type": "application/pdf", "content": base64.StdEncoding.EncodeToString(pdf)},
			{"filename": "notes é.txt", "content": base64.StdEncoding.EncodeToString([]byte("n"))},
		}}, func(t *testing.T, e *message.Entity) {
			if mt, _, _ := e.Header.ContentType(); mt != "multipart/mixed" {
				t.Fatalf("Content-Type %s", mt)
			}
			mr := e.MultipartReader()
			alt, err := mr.NextPart()
			if err != nil {
				t.Fatal(err)
			}
			if mt, _, _ := alt.Header.ContentType(); mt != "multipart/alternative" || len(readParts(t, alt)) != 2 {
				t.Errorf("first part %s", mt)
			}
			for _, want := range []struct {
				ct, name string
				body     []byte
			}{{"application/pdf", "report.pdf", pdf}, {"application/octet-stream", "notes é.txt", []byte("n")}} {
				p, err := mr.NextPart()
				if err != nil {
					t.Fatal(err)
				}
				ct, _, _ := p.Header.ContentType()
				disp, params, _ := p.Header.ContentDisposition()
				body, _ := io.ReadAll(p.Body)
				if ct != want.ct || disp != "attachment" || params["filename"] != want.name || !bytes.Equal(body, want.body) ||
					p.Header.Get("Content-Transfer-Encoding") != "base64" {
					t.Errorf("attachment %s %s %v %q", ct, disp, params, body)
				}
			}
			if _, err := mr.NextPart(); err != io.EOF {
				t.Errorf("after the attachments: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := opsServer(t, nil)
			c := newAPIClient(t, s)
			req := map[string]any{
				"from":    "Sender Ünïcode <sender@example.org>",
				"to":      []string{"Alice <alice@example.org>"},
				"cc":      []string{"carol@example.org"},
				"bcc":     []string{"hidden@example.org"},
				"subject": "Grüße aus Köln",
				"headers": map[string]string{"X-Test-Case": tc.name, "Reply-To": "replies@example.org"},
			}
			for k, v := range tc.req {
				req[k] = v
			}
			var ans sendAnswer
			c.call("POST", "/api/v1/send", req, http.StatusCreated, &ans)
			if ans.ID == "" || len(ans.Mailboxes) != 1 || ans.Mailboxes[0] != "user" {
				t.Fatalf("answer %+v", ans)
			}
			raw := c.raw("user", ans.ID)
			if bytes.Contains(raw, []byte("\n")) && bytes.Count(raw, []byte("\n")) != bytes.Count(raw, []byte("\r\n")) {
				t.Error("a bare LF in the stored message")
			}
			rest := traceFields(t, raw, "sender@example.org", ans.ID)
			e, err := message.Read(bytes.NewReader(rest))
			if err != nil {
				t.Fatal(err)
			}
			h := mail.Header{Header: e.Header}
			if subj, _ := h.Subject(); subj != "Grüße aus Köln" || !isASCIIBytes([]byte(h.Get("Subject"))) {
				t.Errorf("Subject %q, raw %q (RFC 2047 wanted)", subj, h.Get("Subject"))
			}
			if from, err := h.AddressList("From"); err != nil || len(from) != 1 || from[0].Name != "Sender Ünïcode" || from[0].Address != "sender@example.org" {
				t.Errorf("From %v %v (raw %q)", from, err, h.Get("From"))
			}
			if to, _ := h.AddressList("To"); len(to) != 1 || to[0].Address != "alice@example.org" {
				t.Errorf("To %v", to)
			}
			if cc, _ := h.AddressList("Cc"); len(cc) != 1 || cc[0].Address != "carol@example.org" {
				t.Errorf("Cc %v", cc)
			}
			if h.Has("Bcc") {
				t.Error("Bcc written into the header")
			}
			if id, _ := h.MessageID(); id == "" || id != ans.MessageID || !strings.HasSuffix(id, "@mx.test") {
				t.Errorf("Message-ID %q, answer %q", id, ans.MessageID)
			}
			if d, err := h.Date(); err != nil || time.Since(d) > time.Hour || time.Since(d) < -time.Hour {
				t.Errorf("Date %v %v", d, err)
			}
			if h.Get("MIME-Version") != "1.0" || h.Get("X-Test-Case") != tc.name || h.Get("Reply-To") != "replies@example.org" {
				t.Errorf("MIME-Version %q, X-Test-Case %q, Reply-To %q", h.Get("MIME-Version"), h.Get("X-Test-Case"), h.Get("Reply-To"))
			}
			tc.check(t, e)

			size, retr := pop3Retr(t, s, "user", "pass")
			if size != len(raw) || !bytes.Equal(retr, raw) {
				t.Errorf("POP3 LIST %d, RETR %d octets; stored %d (equal %v)", size, len(retr), len(raw), bytes.Equal(retr, raw))
			}
		})
	}
}

type partInfo struct{ ct, body string }

func readParts(t *testing.T, e *message.Entity) []partInfo {
	t.Helper()
	var out []partInfo
	mr := e.MultipartReader()
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := p.Header.ContentType()
		b, _ := io.ReadAll(p.Body)
		out = append(out, partInfo{ct, string(b)})
	}
}

func isASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// TestSendOverSizeRefused: a message over --max-message-size is refused
// with 413 and the reply SMTP gives (552 5.3.4), and nothing is stored.
func TestSendOverSizeRefused(t *testing.T) {
	s := opsServer(t, func(c *config.Config) { c.MaxMessageSize = 2048 })
	c := newAPIClient(t, s)
	var e apiError
	c.call("POST", "/api/v1/send", map[string]any{"from": "a@example.org", "to": []string{"b@example.org"},
		"text": strings.Repeat("x", 3000)}, http.StatusRequestEntityTooLarge, &e)
	if e.SMTP == nil || e.SMTP.Code != 552 || e.SMTP.Enhanced != "5.3.4" || !strings.Contains(e.Error, "max-message-size") {
		t.Errorf("answer %+v", e)
	}
	// A body too large for any message of the limit is refused too.
	code, data := c.do("POST", "/api/v1/send", `{"text":"`+strings.Repeat("y", 2*2048+1<<20+10)+`"}`)
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: %d %s", code, data)
	}
	if l, err := s.store.List("user"); err != nil || len(l) != 0 {
		t.Errorf("stored %d messages, %v", len(l), err)
	}
	const delivered = "postoffice_delivery_duration_seconds_count"
	if n := scrape(t, s)[delivered]; n != 0 {
		t.Errorf("%s = %v after refusals", delivered, n)
	}
	// Under the limit it goes through, counted as SMTP's deliveries are.
	c.call("POST", "/api/v1/send", map[string]any{"from": "a@example.org", "to": []string{"b@example.org"}, "text": "small"}, http.StatusCreated, nil)
	if n := scrape(t, s)[delivered]; n != 1 {
		t.Errorf("%s = %v after one send", delivered, n)
	}
}

// writeUsers writes a users file of the users (password "pw" each).
func writeUsers(t *testing.T, names ...string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s:%s\n", n, hash)
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSendRoutesAsSMTP: with a users file the API needs a login, routes
// each recipient as SMTP's RCPT does (an unknown one: 422 naming it, with
// SMTP's 550 5.1.1, and nothing stored for anyone), and delivers to the
// mailboxes of known ones, reported in the answer.
func TestSendRoutesAsSMTP(t *testing.T) {
	users := writeUsers(t, "alice", "bob")
	s := opsServer(t, func(c *config.Config) { c.UsersFile = users })
	c := newAPIClient(t, s)
	msg := map[string]any{"from": "x@example.org", "to": []string{"alice@example.org", "nobody@example.org"}, "text": "hi"}
	if code, data := c.do("POST", "/api/v1/send", msg); code != http.StatusUnauthorized {
		t.Fatalf("without a login: %d %s", code, data)
	}
	c.login("bob", "pw")
	var e apiError
	c.call("POST", "/api/v1/send", msg, http.StatusUnprocessableEntity, &e)
	if e.Recipient != "nobody@example.org" || e.SMTP == nil || e.SMTP.Code != 550 || e.SMTP.Enhanced != "5.1.1" || !strings.Contains(e.Error, "nobody@example.org") {
		t.Errorf("unknown recipient: %+v", e)
	}
	if l, _ := s.store.List("alice"); len(l) != 0 {
		t.Errorf("alice got %d messages from a refused send", len(l))
	}
	var ans sendAnswer
	c.call("POST", "/api/v1/send", map[string]any{"from": "x@example.org", "to": []string{"Alice@example.org"}, "cc": []string{"bob@example.org", "alice@example.org"}, "text": "hi"}, http.StatusCreated, &ans)
	if strings.Join(ans.Mailboxes, ",") != "alice,bob" {
		t.Errorf("mailboxes %v", ans.Mailboxes)
	}
	for _, u := range []string{"alice", "bob"} {
		l, err := s.store.List(u)
		if err != nil || len(l) != 1 || l[0].ID != ans.ID {
			t.Errorf("%s: %v %v", u, l, err)
		}
	}
	// The size POP3 reports is the size of the stored file.
	size, retr := pop3Retr(t, s, "alice", "pw")
	if size != len(retr) {
		t.Errorf("POP3 LIST says %d, RETR sent %d", size, len(retr))
	}
	if !bytes.Contains(retr, []byte("\tby mx.test (Postoffice) with HTTP id "+ans.ID)) || bytes.Contains(retr, []byte("\r\n\tfor <")) {
		t.Errorf("trace of a message to two recipients: %q", retr[:min(300, len(retr))])
	}
}

// TestSendBadInput: each malformed request is a 400 (or 403/415 for the
// CSRF and content-type rules of every mutation) naming what is wrong,
// stores nothing, and the server goes on.
func TestSendBadInput(t *testing.T) {
	s := opsServer(t, func(c *config.Config) { c.MaxRecipients = 2 })
	c := newAPIClient(t, s)
	ok := `"from":"a@example.org","to":["b@example.org"]`
	for _, tc := range []struct {
		body string
		want string
	}{
		{`{`, "want a JSON object"},
		{`{` + ok + `,"txt":"typo"}`, "unknown field"},
		{`{"to":["b@example.org"]}`, "from: an address is required"},
		{`{"from":"not an address","to":["b@example.org"]}`, "from:"},
		{`{"from":"a@example.org"}`, "at least one recipient"},
		{`{"from":"a@example.org","to":["b@example.org"],"cc":["c@example.org"],"bcc":["d@example.org"]}`, "at most 2"},
		{`{` + ok + `,"to":["b@example.org","bad"]}`, "to[1]"},
		{`{` + ok + `,"subject":"a\r\nBcc: x@example.org"}`, "subject"},
		{`{` + ok + `,"headers":{"Content-Type":"text/html"}}`, "Content-Type cannot be set"},
		{`{` + ok + `,"headers":{"Received":"forged"}}`, "cannot be set"},
		{`{` + ok + `,"headers":{"X-Bad Name":"v"}}`, "not a header field name"},
		{`{` + ok + `,"headers":{"X-A":"v\r\nBcc: x"}}`, "must not hold CR"},
		{`{` + ok + `,"attachments":[{"filename":"a","content":"!!!"}]}`, "attachments[0].content: not base64"},
		{`{` + ok + `,"attachments":[{"filename":"a","content_type":"multipart/mixed","content":""}]}`, "attachments[0].content_type"},
		{`{` + ok + `,"attachments":[{"filename":"../a","content":""}]}`, "attachments[0].filename"},
	} {
		var e apiError
		c.call("POST", "/api/v1/send", tc.body, http.StatusBadRequest, &e)
		if !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.body, e.Error, tc.want)
		}
	}
	// Without the CSRF token: 403; not JSON: 415.
	c.csrf = "wrong"
	if code, _ := c.do("POST", "/api/v1/send", `{`+ok+`}`); code != http.StatusForbidden {
		t.Errorf("without CSRF: %d", code)
	}
	c = newAPIClient(t, s)
	req, _ := http.NewRequest("POST", s.testURL("/api/v1/send"), strings.NewReader(`{`+ok+`}`))
	req.Header.Set("X-CSRF-Token", c.csrf)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d", resp.StatusCode)
	}
	if l, err := s.store.List("user"); err != nil || len(l) != 0 {
		t.Errorf("stored %d messages, %v", len(l), err)
	}
	var ans sendAnswer
	c.call("POST", "/api/v1/send", `{`+ok+`,"text":"still up"}`, http.StatusCreated, &ans)
	if ans.ID == "" {
		t.Errorf("answer %+v", ans)
	}
}

// TestSendHeaderOverrides: "headers" may replace Date and Message-ID
// (once each, no second field), and the fields come in the usual order.
func TestSendHeaderOverrides(t *testing.T) {
	s := opsServer(t, nil)
	c := newAPIClient(t, s)
	var ans sendAnswer
	c.call("POST", "/api/v1/send", map[string]any{"from": "a@example.org", "to": []string{"b@example.org"}, "subject": "s", "text": "t",
		"headers": map[string]string{"Message-ID": "<fixed.1@test>", "Date": "Mon, 01 Jan 2024 00:00:00 +0000", "X-B": "2", "X-A": "1"}}, http.StatusCreated, &ans)
	raw := string(c.raw("user", ans.ID))
	if ans.MessageID != "fixed.1@test" || strings.Count(strings.ToLower(raw), "\r\nmessage-id:") != 1 || strings.Count(raw, "\r\nDate:") != 1 ||
		!strings.Contains(raw, "\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n") {
		t.Errorf("answer %+v, message %q", ans, raw)
	}
	last := -1
	for _, f := range []string{"\r\nFrom:", "\r\nTo:", "\r\nSubject:", "\r\nX-A:", "\r\nX-B:"} {
		i := strings.Index(raw, f)
		if i < last {
			t.Errorf("%q out of order in %q", f, raw)
		}
		last = i
	}
}
