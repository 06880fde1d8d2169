package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// api sends a chaos API request with the session's CSRF token and returns
// the status and body.
func (w *webClient) api(method, path, body string) (int, string) {
	w.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, w.s.testURL(path), r)
	req.Header.Set("X-CSRF-Token", w.csrf)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (w *webClient) mustAPI(method, path, body string, code int) string {
	w.t.Helper()
	got, b := w.api(method, path, body)
	if got != code {
		w.t.Fatalf("%s %s %s: %d %s, want %d", method, path, body, got, b, code)
	}
	return b
}

var (
	connIDRe  = regexp.MustCompile(`\(conn [0-9A-Z]+\)`)
	queuedIDs = regexp.MustCompile(`queued as \S+`)
)

// transcript runs one fixed SMTP session over a raw connection and returns
// every reply, connection and queue ids masked.
func transcript(t *testing.T, s *Server) string {
	t.Helper()
	c := testsupport.Dial(t, s.Listener("smtp").Addr().String())
	defer c.Close()
	var b strings.Builder
	step := func(line string) {
		if line != "" {
			c.Send(line)
		}
		r, err := c.ReadReply()
		if err != nil {
			t.Fatalf("after %q: %v", line, err)
		}
		b.WriteString(strings.Join(r, "\n") + "\n")
	}
	step("")
	for _, l := range []string{"EHLO client.test\r\n", "MAIL FROM:<a@x.test>\r\n", "RCPT TO:<someone@bounce.test>\r\n",
		"RCPT TO:<user@ok.test>\r\n", "DATA\r\n", "Subject: t\r\n\r\nbody\r\n.\r\n", "RSET\r\n", "NOOP\r\n", "QUIT\r\n"} {
		step(l)
	}
	return queuedIDs.ReplaceAllString(connIDRe.ReplaceAllString(b.String(), "(conn X)"), "queued as X")
}

// smtpError returns err as *gosmtp.SMTPError or fails.
func smtpError(t *testing.T, err error, code int, enhanced string) {
	t.Helper()
	var e *gosmtp.SMTPError
	if !errors.As(err, &e) || e.Code != code || (enhanced != "" && e.EnhancedCode != parseEnhanced(enhanced)) {
		t.Fatalf("error %v, want %d %s", err, code, enhanced)
	}
}

func parseEnhanced(s string) gosmtp.EnhancedCode {
	var e gosmtp.EnhancedCode
	parts := strings.Split(s, ".")
	for i := range e {
		for _, c := range parts[i] {
			e[i] = e[i]*10 + int(c-'0')
		}
	}
	return e
}

// TestChaosAPIRulesThenClearedAsBefore: rules set by PUT act on the SMTP
// sessions of a go-smtp client (the deterministic rcpt rule refuses
// *@bounce.test with 550 5.1.1 while other recipients get 250), bad rule
// sets are refused with 400 leaving the rules as they were, every fault is
// counted, and after DELETE the server answers exactly as before.
func TestChaosAPIRulesThenClearedAsBefore(t *testing.T) {
	s := opsServer(t, nil)
	before := transcript(t, s)
	w := newWebClient(t, s)
	if b := w.mustAPI("GET", "/api/v1/chaos", "", 200); !strings.Contains(b, `"enabled":false`) {
		t.Fatalf("GET before: %s", b)
	}
	rule := `{"rules":[{"stage":"rcpt","match":"*@bounce.test","action":"reply","code":550,"enhanced":"5.1.1","text":"mailbox unavailable (chaos)"}]}`
	if b := w.mustAPI("PUT", "/api/v1/chaos", rule, 200); !strings.Contains(b, `"enabled":true`) || !strings.Contains(b, `"source":"api"`) {
		t.Fatalf("PUT: %s", b)
	}

	c, err := gosmtp.Dial(s.Listener("smtp").Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@x.test", nil); err != nil {
		t.Fatal(err)
	}
	smtpError(t, c.Rcpt("someone@bounce.test", nil), 550, "5.1.1")
	if err := c.Rcpt("user@ok.test", nil); err != nil {
		t.Fatalf("other recipient: %v", err)
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(wc, "Subject: chaos\r\n\r\nbody\r\n")
	if err := wc.Close(); err != nil {
		t.Fatalf("message to the accepted recipient: %v", err)
	}
	c.Quit()
	waitMetric(t, s, `postoffice_chaos_injected_total{action="reply",stage="rcpt"}`, func(v float64) bool { return v == 1 })

	for _, bad := range []string{`{"rules":[`, `{"rules":[{"stage":"rcpt","action":"reply","code":250}]}`,
		`{"rules":[{"stage":"rcpt","action":"reply","code":550,"enhanced":"4.1.1"}]}`, `{"rulez":[]}`} {
		code, b := w.api("PUT", "/api/v1/chaos", bad)
		var e struct{ Error string }
		if code != 400 || json.Unmarshal([]byte(b), &e) != nil || e.Error == "" {
			t.Fatalf("PUT %s: %d %s", bad, code, b)
		}
	}
	if b := w.mustAPI("GET", "/api/v1/chaos", "", 200); !strings.Contains(b, `"match":"*@bounce.test"`) {
		t.Fatalf("rules changed by refused PUTs: %s", b)
	}

	if b := w.mustAPI("DELETE", "/api/v1/chaos", "", 200); !strings.Contains(b, `"enabled":false`) {
		t.Fatalf("DELETE: %s", b)
	}
	if after := transcript(t, s); after != before {
		t.Fatalf("transcript after DELETE:\n%s\nbefore the rules:\n%s", after, before)
	}
}

// TestChaosStagesGoSMTP: the go-smtp client sees each stage's fault.
func TestChaosStagesGoSMTP(t *testing.T) {
	s := opsServer(t, nil)
	w := newWebClient(t, s)
	addr := s.Listener("smtp").Addr().String()
	set := func(js string) { t.Helper(); w.mustAPI("PUT", "/api/v1/chaos", js, 200) }

	set(`{"rules":[{"stage":"connect","action":"reply","code":554,"enhanced":"5.7.1","text":"not today"}]}`)
	// go-smtp reads the greeting with its first command.
	c, err := gosmtp.Dial(addr)
	if err == nil {
		err = c.Hello("client.test")
		c.Close()
	}
	smtpError(t, err, 554, "")

	set(`{"rules":[{"stage":"ehlo","action":"reply","code":421,"enhanced":"4.7.0"}]}`)
	c, err = gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	smtpError(t, c.Hello("client.test"), 421, "4.7.0")
	c.Close()

	set(`{"rules":[{"stage":"mail","match":"drop@*","action":"drop"}]}`)
	c, _ = gosmtp.Dial(addr)
	if err := c.Mail("drop@x.test", nil); err == nil || !(errors.Is(err, io.EOF) || testsupport.IsReset(err) || strings.Contains(err.Error(), "EOF")) {
		t.Fatalf("dropped MAIL: %v", err)
	}
	c.Close()

	set(`{"rules":[{"stage":"data","action":"reply","code":452,"enhanced":"4.3.1"},{"stage":"message","action":"reply","code":554,"enhanced":"5.6.0"}]}`)
	c, _ = gosmtp.Dial(addr)
	c.Mail("a@x.test", nil)
	c.Rcpt("user@x.test", nil)
	_, err = c.Data()
	smtpError(t, err, 452, "4.3.1")
	c.Close()

	set(`{"rules":[{"stage":"message","action":"reply","code":554,"enhanced":"5.6.0","text":"content refused"}]}`)
	before := len(mailFilesOf(t, s))
	c, _ = gosmtp.Dial(addr)
	c.Mail("a@x.test", nil)
	c.Rcpt("user@x.test", nil)
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(wc, "Subject: x\r\n\r\nbody\r\n")
	smtpError(t, wc.Close(), 554, "5.6.0")
	c.Close()
	if n := len(mailFilesOf(t, s)); n != before {
		t.Fatalf("a refused message was stored (%d files, %d before)", n, before)
	}
	for _, k := range []string{`{action="reply",stage="connect"}`, `{action="reply",stage="ehlo"}`, `{action="drop",stage="mail"}`, `{action="reply",stage="data"}`, `{action="reply",stage="message"}`} {
		waitMetric(t, s, "postoffice_chaos_injected_total"+k, func(v float64) bool { return v == 1 })
	}
}

// mailFilesOf lists the default mailbox's message files.
func mailFilesOf(t *testing.T, s *Server) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(s.cfg.MailboxDir, "user", d))
		for _, e := range es {
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	return out
}

// TestChaosSeedRepeatsOverSMTP: the same seed gives the same faults for the
// same commands.
func TestChaosSeedRepeatsOverSMTP(t *testing.T) {
	s := opsServer(t, nil)
	w := newWebClient(t, s)
	run := func() string {
		w.mustAPI("PUT", "/api/v1/chaos", `{"seed":7,"rules":[{"stage":"rcpt","action":"reply","code":451,"enhanced":"4.2.0","probability":0.5}]}`, 200)
		c := testsupport.Dial(t, s.Listener("smtp").Addr().String())
		defer c.Close()
		c.ExpectReply("220 *")
		c.Cmd("EHLO c", "250 *")
		c.Cmd("MAIL FROM:<a@x>", "250 *")
		var b strings.Builder
		for range 24 {
			b.WriteString(c.Cmd("RCPT TO:<r@x>", "*").Last()[:3] + " ")
		}
		return b.String()
	}
	a, b := run(), run()
	if a != b || !strings.Contains(a, "451") || !strings.Contains(a, "250") {
		t.Fatalf("seed 7: %s / %s", a, b)
	}
}

// TestChaosRateLimitOverSMTP: with per_second = 2, of five messages sent
// one after the other the first two are accepted and the MAIL of at least
// one later one gets 421 4.7.0 (three in a row would have to be a second
// apart each to pass).
func TestChaosRateLimitOverSMTP(t *testing.T) {
	s := opsServer(t, nil)
	w := newWebClient(t, s)
	w.mustAPI("PUT", "/api/v1/chaos", `{"rate":{"per_second":2}}`, 200)
	var got []int
	for range 5 {
		c, err := gosmtp.Dial(s.Listener("smtp").Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		err = c.Mail("a@x.test", nil)
		var e *gosmtp.SMTPError
		switch {
		case err == nil:
			got = append(got, 250)
			c.Quit()
		case errors.As(err, &e) && e.Code == 421 && e.EnhancedCode == (gosmtp.EnhancedCode{4, 7, 0}):
			got = append(got, 421)
		default:
			t.Fatalf("MAIL: %v", err)
		}
		c.Close()
	}
	limited := 0
	for _, c := range got {
		if c == 421 {
			limited++
		}
	}
	if got[0] != 250 || got[1] != 250 || limited == 0 {
		t.Fatalf("replies %v", got)
	}
	waitMetric(t, s, `postoffice_chaos_injected_total{action="rate_limit",stage="mail"}`, func(v float64) bool { return v == float64(limited) })
}

// TestChaosFileAtStartAndReload: --chaos is in force from the start and
// re-read by Reload (SIGHUP); a broken file keeps the rules in force.
func TestChaosFileAtStartAndReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "chaos.toml")
	os.WriteFile(file, []byte("[[rule]]\nstage = \"rcpt\"\nmatch = \"*@bounce.test\"\naction = \"reply\"\ncode = 550\nenhanced = \"5.1.1\"\n"), 0o600)
	s := opsServer(t, func(c *config.Config) { c.Chaos = file })
	rcpt := func(to string) string {
		c := testsupport.Dial(t, s.Listener("smtp").Addr().String())
		defer c.Close()
		c.ExpectReply("220 *")
		c.Cmd("EHLO c", "250 *")
		c.Cmd("MAIL FROM:<a@x>", "250 *")
		return c.Cmd("RCPT TO:<"+to+">", "*").Last()[:9]
	}
	if r := rcpt("x@bounce.test"); r != "550 5.1.1" {
		t.Fatalf("rule of the file: %s", r)
	}
	w := newWebClient(t, s)
	if b := w.mustAPI("GET", "/api/v1/chaos", "", 200); !strings.Contains(b, `"source":"file"`) {
		t.Fatalf("GET: %s", b)
	}
	os.WriteFile(file, []byte("[[rule]]\nstage = \"rcpt\"\nmatch = \"*@other.test\"\naction = \"reply\"\ncode = 452\nenhanced = \"4.2.2\"\n"), 0o600)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := rcpt("x@bounce.test"); r != "250 2.1.5" {
		t.Fatalf("old rule after reload: %s", r)
	}
	if r := rcpt("x@other.test"); r != "452 4.2.2" {
		t.Fatalf("new rule: %s", r)
	}
	os.WriteFile(file, []byte("[[rule]]\nstage = \"rcpt\"\naction = \"reply\"\ncode = 250\n"), 0o600)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "--chaos") {
		t.Fatalf("broken file: %v", err)
	}
	if r := rcpt("x@other.test"); r != "452 4.2.2" {
		t.Fatalf("rule after a failed reload: %s", r)
	}
	// A broken file at start is an error naming the setting.
	cfg := testsupport.Config(t)
	cfg.Chaos = file
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "--chaos") || !strings.Contains(err.Error(), "code 250") {
		t.Fatalf("New with a broken file: %v", err)
	}
}

// TestWebhookRetriedNeverBlocking250: the receiver fails the first two
// calls (500) and accepts the third, which carries the message's JSON; it
// holds every call until the test has seen the SMTP 250, so the 250 cannot
// have waited for the webhook.
func TestWebhookRetriedNeverBlocking250(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	bodies := make(chan []byte, 1)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		b, _ := io.ReadAll(r.Body)
		if calls.Add(1) <= 2 {
			w.WriteHeader(500)
			return
		}
		bodies <- b
	}))
	defer rcv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	s := opsServer(t, func(c *config.Config) { c.WebhookURL = rcv.URL + "/hook"; c.WebhookSecret = "s3cret" })

	c := testsupport.Dial(t, s.Listener("smtp").Addr().String())
	c.ExpectReply("220 *")
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<sender@x.test>", "250 *")
	c.Cmd("RCPT TO:<user@example.org>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("Subject: webhook test\r\n\r\nbody\r\n.\r\n")
	r := c.ExpectReply("250 2.0.0 Ok: queued as *").Last()
	id := r[strings.LastIndex(r, " ")+1:]
	c.Cmd("QUIT", "221 *")
	close(release)

	var body []byte
	select {
	case body = <-bodies:
	case <-time.After(30 * time.Second):
		t.Fatalf("no accepted webhook call (%d calls)", calls.Load())
	}
	var n struct {
		Event    string
		ID       string
		Mailbox  string
		Envelope struct {
			From string
			To   []string
		}
		Subject  string
		Size     int64
		Received time.Time
	}
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(s.cfg.MailboxDir, "user", "new", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Event != "message.delivered" || n.ID != id || n.Mailbox != "user" || n.Envelope.From != "sender@x.test" ||
		len(n.Envelope.To) != 1 || n.Envelope.To[0] != "user@example.org" || n.Subject != "webhook test" ||
		n.Size != fi.Size() || time.Since(n.Received) > time.Hour {
		t.Fatalf("notification %s (file size %d)", body, fi.Size())
	}
	waitMetric(t, s, "postoffice_webhook_sent_total", func(v float64) bool { return v == 1 })
	m := scrape(t, s)
	if m[`postoffice_webhook_failures_total{final="false",reason="status"}`] != 2 || m["postoffice_webhook_retries_total"] != 2 {
		t.Fatalf("failures %v retries %v", m[`postoffice_webhook_failures_total{final="false",reason="status"}`], m["postoffice_webhook_retries_total"])
	}
}
