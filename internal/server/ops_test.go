package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// opsServer starts a server on loopback port 0 listeners, the HTTP one
// included, with a fresh mailbox directory.
func opsServer(t *testing.T, edit func(*config.Config)) *Server {
	t.Helper()
	cfg := testsupport.Config(t)
	if edit != nil {
		edit(&cfg)
	}
	return testsupport.StartServer(t, cfg, New)
}

func (s *Server) testURL(path string) string {
	return "http://" + s.Listener("http").Addr().String() + path
}

// scrape fetches /metrics and returns every sample by its series as
// written ("name{labels}").
func scrape(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	return testsupport.Scrape(t, s.testURL("/metrics"))
}

// waitMetric polls until cond holds for the series, or fails.
func waitMetric(t *testing.T, s *Server, series string, cond func(float64) bool) {
	t.Helper()
	var v float64
	var ok bool
	if !testsupport.WaitUntil(10*time.Second, func() bool { v, ok = scrape(t, s)[series]; return ok && cond(v) }) {
		t.Fatalf("%s = %v (present %v), condition not met", series, v, ok)
	}
}

// pop3Dial connects to the POP3 listener of s and reads the greeting.
func pop3Dial(t *testing.T, s *Server) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, s.Listener("pop3").Addr().String())
	c.Expect("+OK*")
	return c
}

func send(t *testing.T, s *Server, body string) {
	t.Helper()
	msg := "From: a@example.org\r\nTo: user@example.org\r\nSubject: ops\r\n\r\n" + body + "\r\n"
	if err := smtp.SendMail(s.Listener("smtp").Addr().String(), nil, "a@example.org", []string{"user@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsFollowTraffic scrapes /metrics before and after a delivery
// and a POP3 session and checks every family the traffic touches.
func TestMetricsFollowTraffic(t *testing.T) {
	s := opsServer(t, func(c *config.Config) { c.MetricsMailboxLabels = true }) // the per-mailbox series too
	before := scrape(t, s)
	for _, series := range []string{"go_goroutines", "process_open_fds", `postoffice_mailbox_stats_ready`} {
		if _, ok := before[series]; !ok {
			t.Errorf("no %s", series)
		}
	}
	waitMetric(t, s, "postoffice_mailbox_stats_ready", func(v float64) bool { return v == 1 })

	send(t, s, "hello")
	waitMetric(t, s, `postoffice_mailbox_messages{mailbox="user"}`, func(v float64) bool { return v == 1 })

	p := pop3Dial(t, s)
	p.Cmd("USER user", "+OK*")
	p.Cmd("PASS wrong", "-ERR*")
	p.Cmd("USER user", "+OK*")
	p.Cmd("PASS pass", "+OK*")
	p.Cmd("RETR 1", "+OK*")
	p.Multiline()
	p.Cmd("DELE 1", "+OK*")
	p.Cmd("QUIT", "+OK*")
	waitMetric(t, s, `postoffice_mailbox_messages{mailbox="user"}`, func(v float64) bool { return v == 0 })
	waitMetric(t, s, `postoffice_connections_current{proto="pop3"}`, func(v float64) bool { return v == 0 })

	after := scrape(t, s)
	delta := func(series string) float64 { return after[series] - before[series] }
	for _, c := range []struct {
		series string
		want   float64 // exact increase; -1: any increase
	}{
		{`postoffice_connections_total{proto="smtp"}`, 1},
		{`postoffice_connections_total{proto="pop3"}`, 1},
		{`postoffice_received_bytes_total{proto="smtp"}`, -1},
		{`postoffice_received_bytes_total{proto="pop3"}`, -1},
		{`postoffice_smtp_transactions_total{class="2xx"}`, 1},
		{`postoffice_smtp_messages_total{class="2xx"}`, 1},
		{`postoffice_smtp_message_bytes_total`, -1},
		{`postoffice_delivery_duration_seconds_count`, 1},
		{`postoffice_store_fsync_duration_seconds_count`, -1},
		{`postoffice_pop3_logins_total{result="ok"}`, 1},
		{`postoffice_pop3_logins_total{result="failed"}`, 1},
		{`postoffice_auth_failures_total{proto="pop3"}`, 1},
		{`postoffice_auth_penalties_total`, 1},
		{`postoffice_pop3_retrieved_total`, 1},
		{`postoffice_pop3_deleted_total`, 1},
	} {
		d := delta(c.series)
		if c.want < 0 && d <= 0 || c.want >= 0 && d != c.want {
			t.Errorf("%s increased by %v, want %v", c.series, d, c.want)
		}
	}
	if after[`postoffice_mailbox_bytes{mailbox="user"}`] != 0 || after["postoffice_mailboxes"] != 1 {
		t.Errorf("mailbox gauges after QUIT: %v, %v", after[`postoffice_mailbox_bytes{mailbox="user"}`], after["postoffice_mailboxes"])
	}
}

// TestMailboxGaugesInitialisedFromDisk: mail already on disk at start is
// counted by the background scan.
func TestMailboxGaugesInitialisedFromDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	for _, mb := range []string{"alice", "bob"} {
		for _, sub := range []string{"tmp", "new", "cur"} {
			os.MkdirAll(filepath.Join(dir, mb, sub), 0o700)
		}
	}
	os.WriteFile(filepath.Join(dir, "alice", "cur", "m1:2,S"), []byte("Subject: x\r\n\r\n12345\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "alice", "new", "m2"), []byte("Subject: y\r\n\r\n\r\n"), 0o600)
	s := opsServer(t, func(c *config.Config) {
		c.MailboxDir = dir
		c.MetricsMailboxLabels = true
		c.DefaultUser = "alice" // an existing mailbox: start-up creates no other
	})
	waitMetric(t, s, "postoffice_mailbox_stats_ready", func(v float64) bool { return v == 1 })
	m := scrape(t, s)
	if m[`postoffice_mailbox_messages{mailbox="alice"}`] != 2 || m[`postoffice_mailbox_bytes{mailbox="alice"}`] != 21+16 ||
		m[`postoffice_mailbox_messages{mailbox="bob"}`] != 0 || m["postoffice_mailboxes"] != 2 {
		t.Errorf("gauges: alice %v/%v bob %v count %v", m[`postoffice_mailbox_messages{mailbox="alice"}`],
			m[`postoffice_mailbox_bytes{mailbox="alice"}`], m[`postoffice_mailbox_messages{mailbox="bob"}`], m["postoffice_mailboxes"])
	}
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", url, ct)
	}
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("%s: %v: %q", url, err, b)
	}
	return resp.StatusCode, body
}

// TestHealthReflectsBrokenMailboxDir: /readyz fails while the mailbox
// directory is gone or replaced by a file (tests run as root, where a
// read-only mode would not stop a write), /healthz stays up.
func TestHealthReflectsBrokenMailboxDir(t *testing.T) {
	s := opsServer(t, func(c *config.Config) { c.WebDisable = true }) // "/" is then 404 JSON
	dir := s.cfg.MailboxDir
	ready := func() (int, string) {
		code, body := getJSON(t, s.testURL("/readyz"))
		checks, _ := body["checks"].(map[string]any)
		md, _ := checks["mailbox_dir"].(string)
		return code, md
	}
	if code, md := ready(); code != 200 || md != "ok" {
		t.Fatalf("readyz %d %q", code, md)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if code, md := ready(); code != 503 || md == "ok" {
		t.Errorf("readyz with the directory removed: %d %q", code, md)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, md := ready(); code != 503 || !strings.Contains(md, "not a directory") {
		t.Errorf("readyz with a file in place: %d %q", code, md)
	}
	if code, body := getJSON(t, s.testURL("/healthz")); code != 200 || body["status"] != "ok" {
		t.Errorf("healthz %d %v", code, body)
	}
	os.Remove(dir)
	os.Mkdir(dir, 0o700)
	if code, md := ready(); code != 200 || md != "ok" {
		t.Errorf("readyz after repair: %d %q", code, md)
	}
	if code, body := getJSON(t, s.testURL("/nothing-here")); code != 404 || body["error"] == nil {
		t.Errorf("unknown path: %d %v", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, checks := s.Ready(); ok || checks["listeners"] != "shutting down" {
		t.Errorf("ready after shutdown: %v %v", ok, checks)
	}
	if _, err := http.Get(s.testURL("/healthz")); err == nil {
		t.Error("HTTP still served after Shutdown")
	}
}

// TestRetentionSkipsLockedMailbox: with --retention-max-messages 1, a
// mailbox held by a POP3 session keeps its messages; once the session
// ends, the pruner removes the oldest.
func TestRetentionSkipsLockedMailbox(t *testing.T) {
	s := opsServer(t, func(c *config.Config) {
		c.RetentionMaxMessages = 1
		c.RetentionInterval = 50 * time.Millisecond
	})
	p := pop3Dial(t, s)
	p.Cmd("USER user", "+OK*")
	p.Cmd("PASS pass", "+OK*") // holds the lock
	for i := range 3 {
		send(t, s, fmt.Sprint("message ", i))
	}
	waitMetric(t, s, `postoffice_retention_skipped_total{reason="locked"}`, func(v float64) bool { return v >= 1 })
	if l, err := s.Store().List("user"); err != nil || len(l) != 3 {
		t.Fatalf("locked mailbox pruned: %d messages, %v", len(l), err)
	}
	p.Cmd("QUIT", "+OK*")
	waitMetric(t, s, "postoffice_retention_removed_total", func(v float64) bool { return v == 2 })
	l, err := s.Store().List("user")
	if err != nil || len(l) != 1 {
		t.Fatalf("after pruning: %d messages, %v", len(l), err)
	}
	rc, err := l[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	f, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !strings.Contains(string(f), "message 2") {
		t.Errorf("kept the wrong message: %q %v", f, err)
	}
}
