package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Real clients from the distribution, when installed (.ci/run installs
// them): each must see a server as good as Postfix + Dovecot.

func need(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed", tool)
	}
	return path
}

func runTool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func storedMessages(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, f := range mailFiles(t, dir, "user") {
		eml, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, msg := stripTrace(t, eml)
		out = append(out, msg)
	}
	return out
}

func TestPythonSmtplibPoplib(t *testing.T) {
	py := need(t, "python3")
	p := start(t, "")
	sh, sp := hostPort(t, p.Addr("smtp"))
	ph, pp := hostPort(t, p.Addr("pop3"))
	script := `
import smtplib, poplib, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "alice@example.com"; m["To"] = "bob@example.com"; m["Subject"] = "from python"
m.set_content(".leading dot\nsecond line\n")
with smtplib.SMTP(sys.argv[1], int(sys.argv[2])) as s:
    s.ehlo(); assert s.has_extn("pipelining") and s.has_extn("size") and s.has_extn("8bitmime")
    s.send_message(m)
p = poplib.POP3(sys.argv[3], int(sys.argv[4]))
caps = p.capa(); assert "UIDL" in caps and "TOP" in caps, caps
p.user("user"); p.pass_("pass")
count, size = p.stat(); assert count == 1, count
resp, lines, octets = p.retr(1)
assert octets == size, (octets, size)
body = b"\r\n".join(lines).decode()
assert "\r\n.leading dot\r\n" in body, body
resp, top, _ = p.top(1, 0)
assert b"Subject: from python" in top and b".leading dot" not in top
p.dele(1); p.quit()
print("ok")
`
	if out := runTool(t, "", py, "-c", script, sh, sp, ph, pp); strings.TrimSpace(out) != "ok" {
		t.Fatal(out)
	}
	if files := mailFiles(t, p.dir, "user"); len(files) != 0 {
		t.Fatalf("QUIT did not delete: %v", files)
	}
}

func TestCurlSMTPAndPOP3(t *testing.T) {
	curl := need(t, "curl")
	p := start(t, "")
	msg := filepath.Join(t.TempDir(), "msg.txt")
	body := "From: a@example.com\r\nTo: b@example.com\r\nSubject: curl\r\n\r\n.dot line\r\nbye\r\n"
	os.WriteFile(msg, []byte(body), 0o600)
	runTool(t, "", curl, "-sS", "smtp://"+p.Addr("smtp"), "--mail-from", "a@example.com",
		"--mail-rcpt", "b@example.com", "--mail-rcpt", "c@example.com", "--upload-file", msg)
	if got := storedMessages(t, p.dir); len(got) != 1 || got[0] != body {
		t.Fatalf("stored %q", got)
	}
	list := runTool(t, "", curl, "-sS", "-u", "user:pass", "pop3://"+p.Addr("pop3")+"/")
	if !strings.HasPrefix(list, "1 ") {
		t.Fatalf("curl LIST: %q", list)
	}
	retr := runTool(t, "", curl, "-sS", "-u", "user:pass", "pop3://"+p.Addr("pop3")+"/1")
	if !strings.HasSuffix(retr, body) {
		t.Fatalf("curl RETR: %q", retr)
	}
}

func TestSwaks(t *testing.T) {
	swaks := need(t, "swaks")
	p := start(t, "")
	out := runTool(t, "", swaks, "--server", p.Addr("smtp"), "--from", "a@example.com",
		"--to", "b@example.com,c@example.com", "--header", "Subject: swaks", "--body", "hello from swaks", "--pipeline")
	if !strings.Contains(out, "queued as") {
		t.Fatalf("swaks: %s", out)
	}
	if got := storedMessages(t, p.dir); len(got) != 1 || !strings.Contains(got[0], "Subject: swaks\r\n") || !strings.Contains(got[0], "hello from swaks") {
		t.Fatalf("stored %q", got)
	}
}

func TestFetchmail(t *testing.T) {
	fetchmail := need(t, "fetchmail")
	p := start(t, "")
	bodies := []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\n.dotted\r\nsecond\r\n"}
	for _, b := range bodies {
		sendRaw(t, p.Addr("smtp"), "a@example.com", []string{"b@example.com"}, strings.ReplaceAll(b, "\r\n.", "\r\n.."))
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	host, port := hostPort(t, p.Addr("pop3"))
	rc := filepath.Join(dir, "fetchmailrc")
	os.WriteFile(rc, []byte("set no syslog\npoll "+host+" service "+port+" protocol pop3 auth password\n  user user password pass is root here\n  sslproto '' no sslcertck\n  mda \"/bin/sh -c 'cat >> "+out+"'\"\n"), 0o600)
	cmd := exec.Command(fetchmail, "-f", rc, "--nosyslog", "-v")
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, o)
	}
	got, _ := os.ReadFile(out)
	for _, b := range []string{"first", "\n.dotted\n", "second"} {
		if !strings.Contains(strings.ReplaceAll(string(got), "\r\n", "\n"), b) {
			t.Errorf("fetchmail output lacks %q:\n%s", b, got)
		}
	}
	if files := mailFiles(t, p.dir, "user"); len(files) != 0 {
		t.Fatalf("fetchmail did not delete: %d left", len(files))
	}
}
