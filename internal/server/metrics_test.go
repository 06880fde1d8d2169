package server

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// TestMetricsCountRefusalsAndStoreErrors: a connection over
// --max-connections is counted as refused with reason "limit", and a
// delivery the store cannot make (new/ replaced by a file) as a 4xx message
// and a store error of op "deliver".
func TestMetricsCountRefusalsAndStoreErrors(t *testing.T) {
	s := opsServer(t, func(c *config.Config) {
		c.MaxConnections = 1
		c.WebDisable = true
	})
	send(t, s, "creates the mailbox")

	// The slot of that delivery's session comes free once the server has
	// closed it, which may be just after the client saw 221.
	var a *testsupport.Conn
	for try := 0; ; try++ {
		a = faultDial(t, s.Listener("smtp"))
		l, err := a.ReadLine()
		if strings.HasPrefix(l, "220 ") {
			break
		}
		if !strings.HasPrefix(l, "421 ") || try == 100 {
			t.Fatalf("first connection: %q %v", l, err)
		}
		a.Close()
		time.Sleep(10 * time.Millisecond)
	}
	rejected := scrape(t, s)[`postoffice_connections_rejected_total{proto="smtp",reason="limit"}`]
	b := faultDial(t, s.Listener("smtp"))
	b.ExpectReply("421 *")
	waitMetric(t, s, `postoffice_connections_rejected_total{proto="smtp",reason="limit"}`, func(v float64) bool { return v == rejected+1 })

	newDir := filepath.Join(s.cfg.MailboxDir, "user", "new")
	if err := os.Rename(newDir, newDir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a.Send("EHLO x\r\nMAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
	a.ExpectReply("250 *")
	a.ExpectReply("250 *")
	a.ExpectReply("250 *")
	a.ExpectReply("354 *")
	a.Send("Subject: refused\r\n\r\nbody\r\n.\r\n")
	a.ExpectReply("451 4.3.0 *")
	m := scrape(t, s)
	for series, want := range map[string]float64{
		`postoffice_store_errors_total{op="deliver"}`: 1,
		`postoffice_smtp_messages_total{class="4xx"}`: 1,
		`postoffice_smtp_messages_total{class="2xx"}`: 1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
}

// get GETs url with the Authorization header auth (none when empty) and
// returns the status, the WWW-Authenticate header and the body.
func get(t *testing.T, url, auth string) (code int, challenge, body string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

// Per-mailbox series name the users: without --metrics-mailbox-labels
// /metrics has none (only the totals and the mailbox count); with it, the
// series of each mailbox are back.
func TestMetricsMailboxLabelsOnlyWhenAsked(t *testing.T) {
	for _, labels := range []bool{false, true} {
		s := opsServer(t, func(c *config.Config) { c.MetricsMailboxLabels = labels; c.WebDisable = true })
		send(t, s, "one")
		waitMetric(t, s, "postoffice_stored_messages", func(v float64) bool { return v == 1 })
		m := scrape(t, s)
		_, perMailbox := m[`postoffice_mailbox_messages{mailbox="user"}`]
		if perMailbox != labels {
			t.Errorf("labels %v: per-mailbox series present: %v", labels, perMailbox)
		}
		code, _, text := get(t, s.testURL("/metrics"), "")
		if code != 200 || strings.Contains(text, `mailbox="user"`) != labels {
			t.Errorf("labels %v: user name in /metrics: %v", labels, strings.Contains(text, `mailbox="user"`))
		}
		if m["postoffice_mailboxes"] != 1 || m["postoffice_stored_bytes"] <= 0 {
			t.Errorf("labels %v: mailboxes %v, stored bytes %v", labels, m["postoffice_mailboxes"], m["postoffice_stored_bytes"])
		}
	}
}

// --metrics-addr serves /metrics on a listener of its own, and only
// there: the HTTP listener answers it 404 and keeps /readyz and the web
// inbox; the metrics listener serves nothing else.
func TestMetricsAddrIsItsOwnListener(t *testing.T) {
	s := opsServer(t, func(c *config.Config) { c.MetricsAddr = "127.0.0.1:0" })
	ml := s.Listener("metrics")
	if ml == nil || ml.Addr().String() == s.Listener("http").Addr().String() {
		t.Fatalf("no metrics listener of its own: %v", ml)
	}
	murl := "http://" + ml.Addr().String()
	if code, _, body := get(t, murl+"/metrics", ""); code != 200 || !strings.Contains(body, "postoffice_build_info") {
		t.Errorf("metrics listener /metrics: %d", code)
	}
	if code, _, _ := get(t, murl+"/readyz", ""); code != 404 {
		t.Errorf("metrics listener /readyz: %d, want 404", code)
	}
	if code, _, body := get(t, s.testURL("/metrics"), ""); code != 404 || strings.Contains(body, "postoffice_") {
		t.Errorf("HTTP listener /metrics: %d, want 404", code)
	}
	if code, _, _ := get(t, s.testURL("/readyz"), ""); code != 200 {
		t.Errorf("HTTP listener /readyz: %d", code)
	}
	if code, _, _ := get(t, s.testURL("/api/v1/session"), ""); code != 200 {
		t.Errorf("HTTP listener web inbox: %d", code)
	}
}

// --metrics-token: /metrics wants the bearer token (RFC 6750 §2.1) and
// answers 401 with a Bearer challenge (§3) otherwise, on the HTTP listener
// and on --metrics-addr alike; /healthz and /readyz need none.
func TestMetricsTokenRequired(t *testing.T) {
	const token = "s3cret-Token_1.~+/="
	for _, own := range []bool{false, true} {
		s := opsServer(t, func(c *config.Config) {
			c.MetricsToken = token
			if own {
				c.MetricsAddr = "127.0.0.1:0"
			}
		})
		url := s.testURL("/metrics")
		if own {
			url = "http://" + s.Listener("metrics").Addr().String() + "/metrics"
		}
		for _, tc := range []struct {
			auth, challenge string
			code            int
		}{
			{"", `Bearer realm="postoffice metrics"`, 401},
			{"Bearer wrong", `Bearer realm="postoffice metrics", error="invalid_token"`, 401},
			{"Bearer " + token + "x", `Bearer realm="postoffice metrics", error="invalid_token"`, 401},
			{"Basic " + token, `Bearer realm="postoffice metrics", error="invalid_token"`, 401},
			{"Bearer " + token, "", 200},
			{"bearer " + token, "", 200}, // the scheme is case-insensitive
		} {
			code, challenge, body := get(t, url, tc.auth)
			if code != tc.code || challenge != tc.challenge {
				t.Errorf("own listener %v, Authorization %q: %d %q, want %d %q", own, tc.auth, code, challenge, tc.code, tc.challenge)
			}
			if code == 401 && strings.Contains(body, "postoffice_") {
				t.Errorf("401 with metrics in the body")
			}
		}
		if code, _, _ := get(t, s.testURL("/readyz"), ""); code != 200 {
			t.Errorf("/readyz with a metrics token: %d", code)
		}
	}
}

// TestMetricsIMAP: IMAP logins by result, commands by name and result,
// sessions and IDLE sessions reach /metrics.
func TestMetricsIMAP(t *testing.T) {
	s := opsServer(t, nil)
	c := faultDial(t, s.Listener("imap"))
	c.Expect("* OK *")
	c.IMAP("LOGIN user wrong", "NO *")
	c.IMAP("LOGIN user pass", "OK *")
	c.IMAP("SELECT INBOX", "OK *")
	c.Send("i IDLE\r\n")
	c.Expect("+ *")
	waitMetric(t, s, `postoffice_imap_idle_sessions`, func(v float64) bool { return v == 1 })
	waitMetric(t, s, `postoffice_imap_sessions`, func(v float64) bool { return v == 1 })
	c.Send("DONE\r\n")
	c.Expect("i OK *")
	m := scrape(t, s)
	for series, want := range map[string]float64{
		`postoffice_imap_logins_total{result="ok"}`:                    1,
		`postoffice_imap_logins_total{result="failed"}`:                1,
		`postoffice_auth_failures_total{proto="imap"}`:                 1,
		`postoffice_imap_commands_total{command="SELECT",result="ok"}`: 1,
		`postoffice_imap_commands_total{command="LOGIN",result="no"}`:  1,
		`postoffice_imap_commands_total{command="IDLE",result="ok"}`:   1,
		`postoffice_imap_idle_sessions`:                                0,
		`postoffice_connections_total{proto="imap"}`:                   1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	c.IMAP("LOGOUT", "OK *")
	waitMetric(t, s, `postoffice_imap_sessions`, func(v float64) bool { return v == 0 })
}
