package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// chaosScript drives the chaos rules of a running postoffice with Python's
// smtplib and the JSON API (urllib, a cookie jar for the session and its
// CSRF token). Arguments: SMTP host, SMTP port, HTTP base URL.
const chaosScript = `
import smtplib, sys, json, time, urllib.request, http.cookiejar
host, port, base = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jar = http.cookiejar.CookieJar()
web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
csrf = json.load(web.open(base + "/api/v1/session"))["csrf_token"]
def api(method, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + "/api/v1/chaos", data=data, method=method,
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    try:
        with web.open(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
MSG = "Subject: chaos\r\n\r\nbody\r\n"

# The --chaos file: *@bounce.test refused at RCPT, the others accepted.
st, v = api("GET")
assert st == 200 and v["enabled"] and v["source"] == "file", v
with smtplib.SMTP(host, port) as s:
    refused = s.sendmail("a@x.test", ["one@bounce.test", "user@ok.test"], MSG)
    assert list(refused) == ["one@bounce.test"], refused
    code, text = refused["one@bounce.test"]
    assert code == 550 and text.startswith(b"5.1.1 mailbox unavailable (chaos)"), refused

# Each stage through the API.
def put(rules, **kw):
    body = {"rules": rules}; body.update(kw)
    st, v = api("PUT", body)
    assert st == 200 and v["enabled"], (st, v)

put([{"stage": "connect", "action": "reply", "code": 554, "enhanced": "5.7.1", "text": "closed for tests"}])
try:
    smtplib.SMTP(host, port); raise SystemExit("connect: no error")
except smtplib.SMTPConnectError as e:
    assert e.smtp_code == 554, e

put([{"stage": "ehlo", "match": "slow.test", "action": "delay", "delay": "200ms"}])
with smtplib.SMTP(host, port, local_hostname="slow.test") as s:
    t0 = time.monotonic(); code, _ = s.ehlo(); took = time.monotonic() - t0
    assert code == 250 and took >= 0.2, (code, took)

put([{"stage": "mail", "match": "drop@*", "action": "drop"}])
with smtplib.SMTP(host, port) as s:
    try:
        s.sendmail("drop@x.test", ["user@ok.test"], MSG); raise SystemExit("drop: no error")
    except smtplib.SMTPServerDisconnected:
        pass

put([{"stage": "data", "action": "reply", "code": 451, "enhanced": "4.3.0", "text": "try later"}])
with smtplib.SMTP(host, port) as s:
    try:
        s.sendmail("a@x.test", ["user@ok.test"], MSG); raise SystemExit("data: no error")
    except smtplib.SMTPDataError as e:
        assert e.smtp_code == 451 and e.smtp_error.startswith(b"4.3.0 try later"), e

put([{"stage": "message", "match": "*@fail.test", "action": "reply", "code": 554, "enhanced": "5.6.0", "text": "content refused"}])
with smtplib.SMTP(host, port) as s:
    try:
        s.sendmail("a@x.test", ["user@fail.test"], MSG); raise SystemExit("message: no error")
    except smtplib.SMTPDataError as e:
        assert e.smtp_code == 554, e
    s.sendmail("a@x.test", ["user@ok.test"], MSG)  # the session goes on

# The rate limit: 2 a second; of five in a row at least one gets 421.
put([], rate={"per_second": 2})
codes = []
for i in range(5):
    try:
        with smtplib.SMTP(host, port) as s:
            s.sendmail("a@x.test", ["user@ok.test"], MSG)
        codes.append(250)
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 421 and e.smtp_error.startswith(b"4.7.0"), e
        codes.append(421)
    except smtplib.SMTPServerDisconnected:
        codes.append(421)  # the server closed after its 421
assert codes[:2] == [250, 250] and 421 in codes, codes

# Bad rules are refused with 400 and a JSON error.
st, v = api("PUT", {"rules": [{"stage": "rcpt", "action": "reply", "code": 250}]})
assert st == 400 and "error" in v, (st, v)
st, v = api("DELETE")
assert st == 200 and not v["enabled"], v
with smtplib.SMTP(host, port) as s:
    assert s.sendmail("a@x.test", ["one@bounce.test"], MSG) == {}
print("ok")
`

// TestChaosPythonSmtplib: the rules of --chaos at start, then every stage
// and action and the rate limit set through the API, as Python's smtplib
// sees them; SIGHUP re-reads the file.
func TestChaosPythonSmtplib(t *testing.T) {
	py := need(t, "python3")
	file := filepath.Join(t.TempDir(), "chaos.toml")
	rules := "[[rule]]\nstage = \"rcpt\"\nmatch = \"*@bounce.test\"\naction = \"reply\"\ncode = 550\nenhanced = \"5.1.1\"\ntext = \"mailbox unavailable (chaos)\"\n"
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "", "--http-addr", "127.0.0.1:0", "--chaos", file)
	sh, sp := hostPort(t, p.Addr("smtp"))
	base := "http://" + p.Addr("http")
	if out := runTool(t, "", py, "-c", chaosScript, sh, sp, base); strings.TrimSpace(out) != "ok" {
		t.Fatal(out)
	}
	if !strings.Contains(p.Log(), "chaos: fault injected") {
		t.Fatal("no log line for the injected faults")
	}

	// SIGHUP: the file again (the API's DELETE had cleared its rules).
	p.cmd.Process.Signal(syscall.SIGHUP)
	if !testsupport.WaitUntil(10*time.Second, func() bool {
		resp, err := http.Get(base + "/api/v1/chaos")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"source":"file"`)
	}) {
		t.Fatal("SIGHUP did not load --chaos again")
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(b)
	for _, series := range []string{`postoffice_chaos_injected_total{action="reply",stage="rcpt"} 1`, `postoffice_chaos_injected_total{action="rate_limit",stage="mail"}`,
		`postoffice_chaos_injected_total{action="drop",stage="mail"} 1`, `postoffice_chaos_injected_total{action="delay",stage="ehlo"} 1`} {
		if !strings.Contains(metrics, series) {
			t.Errorf("no %s in /metrics", series)
		}
	}
}
