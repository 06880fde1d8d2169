package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/testsupport"
)

// opsScrape fetches /metrics of p and returns the samples by series.
func opsScrape(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	return testsupport.Scrape(t, "http://"+p.Addr("http")+"/metrics")
}

// TestOpsMetricsThroughBinary: the real binary's /metrics before and after
// a delivery and a POP3 session.
func TestOpsMetricsThroughBinary(t *testing.T) {
	p := start(t, "")
	before := opsScrape(t, p)
	sendRaw(t, p.Addr("smtp"), "a@example.org", []string{"user@example.org"}, "Subject: m\r\n\r\nhello\r\n")
	c := login(t, p.Addr("pop3"), "user", "pass")
	c.Send("RETR 1\r\n")
	c.Expect("+OK*")
	c.MultilineText()
	c.Send("DELE 1\r\nQUIT\r\n")
	c.Expect("+OK*")
	c.Expect("+OK*")
	var after map[string]float64
	testsupport.WaitUntil(10*time.Second, func() bool {
		after = opsScrape(t, p)
		return after[`postoffice_connections_current{proto="pop3"}`] == 0 && after[`postoffice_connections_current{proto="smtp"}`] == 0
	})
	for series, want := range map[string]float64{
		`postoffice_connections_total{proto="smtp"}`:      1,
		`postoffice_connections_total{proto="pop3"}`:      1,
		`postoffice_smtp_messages_total{class="2xx"}`:     1,
		`postoffice_smtp_transactions_total{class="2xx"}`: 1,
		`postoffice_delivery_duration_seconds_count`:      1,
		`postoffice_pop3_logins_total{result="ok"}`:       1,
		`postoffice_pop3_retrieved_total`:                 1,
		`postoffice_pop3_deleted_total`:                   1,
		`postoffice_connections_current{proto="pop3"}`:    0,
	} {
		if d := after[series] - before[series]; d != want {
			t.Errorf("%s changed by %v, want %v", series, d, want)
		}
	}
	if after["go_goroutines"] <= 0 || after["process_resident_memory_bytes"] <= 0 {
		t.Errorf("runtime metrics missing: %v %v", after["go_goroutines"], after["process_resident_memory_bytes"])
	}
}

// TestOpsSIGHUPReloadsUsersFile: a users file edited so that the file
// watcher cannot notice (same size, inode and modification time) is
// reloaded by SIGHUP, and the new user can log in.
func TestOpsSIGHUPReloadsUsersFile(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), 4)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("bob:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "", "--users-file", users, "--auth-delay", "0s")
	login(t, p.Addr("pop3"), "bob", "secret").Send("QUIT\r\n")

	fi, err := os.Stat(users)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(users, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("cat"), 0) // bob -> cat, in place
	f.Close()
	os.Chtimes(users, fi.ModTime(), fi.ModTime())

	tryCat := func() string {
		c := testsupport.Dial(t, p.Addr("pop3"))
		c.Expect("+OK*")
		c.Send("USER cat\r\nPASS secret\r\n")
		c.Expect("+OK*")
		return c.Line()
	}
	time.Sleep(1500 * time.Millisecond) // the watcher polls every second
	if l := tryCat(); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("cat logged in before SIGHUP: %q", l)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	if !testsupport.WaitUntil(10*time.Second, func() bool { return strings.Contains(p.Log(), "reloaded users") }) {
		t.Fatal("no reload logged after SIGHUP")
	}
	if l := tryCat(); !strings.HasPrefix(l, "+OK maildrop locked") {
		t.Errorf("cat after SIGHUP: %q", l)
	}
}

// TestOpsSIGTERMDrains: SIGTERM during DATA lets the message finish and be
// acknowledged, /readyz answers 503 meanwhile, and the process exits 0.
func TestOpsSIGTERMDrains(t *testing.T) {
	p := start(t, "")
	ready := func() (int, string) {
		resp, err := http.Get("http://" + p.Addr("http") + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Checks["listeners"]
	}
	if code, l := ready(); code != 200 || l != "ok" {
		t.Fatalf("readyz before: %d %q", code, l)
	}
	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	c.Send("EHLO c.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("354 *")
	c.Send("Subject: drain\r\n\r\nfirst half\r\n")

	p.cmd.Process.Signal(syscall.SIGTERM)
	var code int
	var l string
	if !testsupport.WaitUntil(10*time.Second, func() bool { code, l = ready(); return code == 503 && l == "shutting down" }) {
		t.Fatalf("readyz while draining: %d %q", code, l)
	}
	c.Send("second half\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as *")
	c.ExpectReply("421 4.3.2 *")
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after the session ended")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	files := mailFiles(t, p.dir, "user")
	if len(files) != 1 {
		t.Fatalf("%d messages stored", len(files))
	}
	if b, _ := os.ReadFile(files[0]); !strings.Contains(string(b), "first half\r\nsecond half\r\n") {
		t.Errorf("stored %q", b)
	}
}

func TestOpsVersionAndCheck(t *testing.T) {
	code, out := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "postoffice ") || !strings.Contains(out, " go1.") {
		t.Errorf("version: %d %q", code, out)
	}
	dir := filepath.Join(t.TempDir(), "mail")
	code, out = runCLI(t, "", append([]string{"check", "--mailbox-dir", dir, "--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0", "--imap-addr", "127.0.0.1:0"}, storeArgs(t, dir)...)...)
	// With the shared store, check first prints what it found of the
	// engines (versions, schema), one line each, then "ok".
	if code != 0 || !strings.HasSuffix(out, "ok\n") || (!underPostgres() && out != "ok\n") {
		t.Errorf("check: %d %q", code, out)
	}
	code, out = runCLI(t, "", append([]string{"check", "--mailbox-dir", dir, "--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0", "--imap-addr", "127.0.0.1:0", "--users-file", dir + "/none"}, storeArgs(t, dir)...)...)
	if code != 1 || !strings.HasPrefix(out, "users-file: ") && !strings.Contains(out, "\nusers-file: ") {
		t.Errorf("check with a missing users file: %d %q", code, out)
	}
}
