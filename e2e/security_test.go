package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// runCLI runs the postoffice binary with args and stdin, returning its
// exit code and combined output.
func runCLI(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

// usersFile makes a users file with the CLI and returns its path.
func usersFile(t *testing.T, users map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	for name, pass := range users {
		if code, out := runCLI(t, pass+"\n", "user", "add", "--users-file", path, "--password-stdin", "--cost", "4", name); code != 0 {
			t.Fatalf("user add %s: %d %s", name, code, out)
		}
	}
	return path
}

func TestUserCommandRoundTrip(t *testing.T) {
	path := usersFile(t, map[string]string{"alice": "wonderland", "bob": "builder"})
	if code, out := runCLI(t, "", "user", "list", "--users-file", path); code != 0 || out != "alice\nbob\n" {
		t.Fatalf("list: %d %q", code, out)
	}
	if code, out := runCLI(t, "x\n", "user", "add", "--users-file", path, "--password-stdin", "alice"); code != 1 || !strings.Contains(out, "alice") {
		t.Fatalf("duplicate add: %d %q", code, out)
	}
	for _, bad := range []string{"../x", "a/b", ".hidden", strings.Repeat("n", 65)} {
		if code, _ := runCLI(t, "x\n", "user", "add", "--users-file", path, "--password-stdin", bad); code == 0 {
			t.Errorf("user add %q accepted", bad)
		}
	}
	if code, out := runCLI(t, "newpass\n", "user", "passwd", "--users-file", path, "--password-stdin", "--cost", "4", "bob"); code != 0 {
		t.Fatalf("passwd: %d %s", code, out)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "newpass") || strings.Contains(string(data), "wonderland") {
		t.Fatal("a password is stored in clear")
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode %v", st.Mode().Perm())
	}
	p := start(t, "", "--users-file", path)
	login(t, p.Addr("pop3"), "bob", "newpass")
	c := testsupport.Dial(t, p.Addr("pop3"))
	c.Expect("+OK*")
	c.Send("USER alice\r\nPASS wrong\r\n")
	c.Expect("+OK*")
	c.Expect("-ERR [AUTH]*")

	if code, out := runCLI(t, "", "user", "del", "--users-file", path, "bob"); code != 0 {
		t.Fatalf("del: %d %s", code, out)
	}
	if code, out := runCLI(t, "", "user", "list", "--users-file", path); code != 0 || out != "alice\n" {
		t.Fatalf("list after del: %d %q", code, out)
	}
}

// Per-user mailboxes: mail to alice and bob lands in separate Maildirs,
// each sees only their own mail, unknown recipients are refused at RCPT,
// and names that could reach outside the mailbox directory go nowhere.
func TestPerUserRouting(t *testing.T) {
	path := usersFile(t, map[string]string{"alice": "a-pass", "bob": "b-pass"})
	p := start(t, "", "--users-file", path, "--auth-delay", "10ms")
	sendRaw(t, p.Addr("smtp"), "x@test", []string{"alice@one.test", "ALICE+news@two.test"}, "Subject: for alice\r\n\r\nhi\r\n")
	sendRaw(t, p.Addr("smtp"), "x@test", []string{"bob@one.test"}, "Subject: for bob\r\n\r\nhi\r\n")

	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	c.Send("EHLO t\r\nMAIL FROM:<x@test>\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	for _, rcpt := range []string{"carol@one.test", "../alice@one.test", "a/b@one.test", "..@one.test", "user@one.test", strings.Repeat("a", 200) + "@one.test"} {
		c.Send("RCPT TO:<" + rcpt + ">\r\n")
		// 550 5.1.1 (no such user) or 501 5.1.3 (not a valid RFC 5321
		// local part, e.g. a leading dot or over 64 octets).
		if l := c.ExpectReply("5* 5.1.*").Last(); !strings.HasPrefix(l, "550 5.1.1") && !strings.HasPrefix(l, "501 5.1.3") {
			t.Errorf("RCPT %.40s: %s", rcpt, l)
		}
	}
	c.Send("QUIT\r\n")
	c.ExpectReply("221 *")

	if n := len(mailFiles(t, p.dir, "alice")); n != 1 {
		t.Fatalf("alice has %d files, want 1 (two addresses, one mailbox)", n)
	}
	if n := len(mailFiles(t, p.dir, "bob")); n != 1 {
		t.Fatalf("bob has %d files", n)
	}
	ents, _ := os.ReadDir(p.dir)
	for _, e := range ents {
		// .tmp is the staging directory of deliveries, .index the
		// folders' index files: never mailboxes.
		if e.Name() != "alice" && e.Name() != "bob" && e.Name() != ".tmp" && e.Name() != ".index" {
			t.Errorf("unexpected entry %q in the mailbox directory", e.Name())
		}
	}
	for user, subject := range map[string]string{"alice": "for alice", "bob": "for bob"} {
		c := login(t, p.Addr("pop3"), user, user[:1]+"-pass")
		c.Send("STAT\r\n")
		c.Expect("+OK 1 *")
		c.Send("TOP 1 0\r\n")
		c.Expect("+OK*")
		if hdr := c.MultilineText(); !strings.Contains(hdr, "Subject: "+subject+"\r\n") {
			t.Errorf("%s sees %q", user, hdr)
		}
		c.Send("QUIT\r\n")
		c.Expect("+OK*")
	}
}

func TestCatchAllAndDomains(t *testing.T) {
	path := usersFile(t, map[string]string{"alice": "a", "postmaster": "p"})
	p := start(t, "", "--users-file", path, "--catch-all", "postmaster", "--domain", "one.test")
	sendRaw(t, p.Addr("smtp"), "x@test", []string{"nobody@one.test"}, "Subject: stray\r\n\r\nhi\r\n")
	if n := len(mailFiles(t, p.dir, "postmaster")); n != 1 {
		t.Fatalf("catch-all has %d files", n)
	}
	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	c.Send("EHLO t\r\nMAIL FROM:<x@test>\r\nRCPT TO:<alice@elsewhere.test>\r\nQUIT\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("550 5.7.1 *")
	c.ExpectReply("221 *")
}

// STARTTLS with a real crypto/tls client: STARTTLS is offered, EHLO is
// needed again afterwards, AUTH works, and the Received header says ESMTPSA.
func TestSTARTTLSAuthSubmission(t *testing.T) {
	path := usersFile(t, map[string]string{"alice": "secret"})
	p := start(t, "", "--users-file", path, "--tls-self-signed", "--smtp-require-auth", "--smtp-require-helo")
	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	c.Send("EHLO client.test\r\n")
	var ehlo []string
	for {
		l := c.Line()
		ehlo = append(ehlo, l)
		if l[3] == ' ' {
			break
		}
	}
	if !strings.Contains(strings.Join(ehlo, "\n"), "STARTTLS") {
		t.Fatalf("no STARTTLS in %q", ehlo)
	}
	c.Send("MAIL FROM:<alice@test>\r\n")
	c.ExpectReply("530 5.7.0 *")
	c.Send("STARTTLS\r\n")
	c.ExpectReply("220 *")
	tc := c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if v := tc.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("TLS version %x", v)
	}
	c.Send("MAIL FROM:<alice@test>\r\n")
	c.ExpectReply("503 5.5.1 *") // RFC 3207 §4.2: state is reset, EHLO first
	c.Send("EHLO client.test\r\n")
	c.ExpectReply("250 *")
	c.Send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")) + "\r\n")
	c.ExpectReply("535 5.7.8 *")
	c.Send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")) + "\r\n")
	c.ExpectReply("235 2.7.0 *")
	c.Send("MAIL FROM:<alice@test>\r\nRCPT TO:<alice@test>\r\nDATA\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("354 *")
	c.Send("Subject: secure\r\n\r\nbody\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as *")
	files := mailFiles(t, p.dir, "alice")
	if len(files) != 1 {
		t.Fatalf("%d files", len(files))
	}
	eml, _ := os.ReadFile(files[0])
	if trace, _ := stripTrace(t, eml); !strings.Contains(trace, "with ESMTPSA id") || !strings.Contains(trace, "(using TLSv1.") {
		t.Fatalf("trace %q", trace)
	}
}

// Implicit TLS listeners (SMTPS, POP3S) and POP3 STLS.
func TestImplicitTLSAndSTLS(t *testing.T) {
	p := start(t, "", "--tls-self-signed", "--smtps-addr", "127.0.0.1:0", "--pop3s-addr", "127.0.0.1:0")
	cfg := &tls.Config{InsecureSkipVerify: true}
	for _, tc := range []struct{ name, greeting string }{{"smtps", "220 mx.test ESMTP*"}, {"pop3s", "+OK*"}} {
		c := testsupport.DialTLS(t, p.Addr(tc.name), cfg)
		c.Expect(tc.greeting)
		c.Close()
	}
	c := testsupport.Dial(t, p.Addr("pop3"))
	c.Expect("+OK*")
	c.Send("CAPA\r\n")
	c.Expect("+OK*")
	if capa := c.MultilineText(); !strings.Contains(capa, "STLS\r\n") {
		t.Fatalf("CAPA without STLS: %q", capa)
	}
	c.Send("STLS\r\n")
	c.Expect("+OK*")
	c.StartTLS(cfg)
	c.Send("USER user\r\nPASS pass\r\n")
	c.Expect("+OK*")
	c.Expect("+OK maildrop locked and ready*")
}

// Start-up refuses to expose the default credentials beyond loopback.
func TestRefusesPublicDefaultCredentials(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary, append([]string{"--mailbox-dir", dir, "--smtp-addr", "0.0.0.0:0", "--pop3-addr", "", "--imap-addr", ""},
		storeArgs(t, dir)...)...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("postoffice started with public default credentials")
	}
	if err == nil || !strings.Contains(string(out), "--insecure") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("err %v, output %q", err, out)
	}
}

// RFC 5321 §4.5.1: postmaster is always deliverable. Without a user or
// alias of that name and without a catch-all it goes to --web-admin, else
// to the first user by name.
func TestPostmasterAlwaysAccepted(t *testing.T) {
	path := usersFile(t, map[string]string{"bob": "b", "carol": "c"})
	p := start(t, "", "--users-file", path)
	sendRaw(t, p.Addr("smtp"), "x@test", []string{"postmaster"}, "Subject: to postmaster\r\n\r\nhi\r\n")
	sendRaw(t, p.Addr("smtp"), "x@test", []string{"PostMaster@mx.test"}, "Subject: to postmaster\r\n\r\nhi\r\n")
	if n := len(mailFiles(t, p.dir, "bob")); n != 2 {
		t.Fatalf("bob (first user) has %d files, want 2", n)
	}
	q := start(t, "", "--users-file", path, "--web-admin", "carol")
	sendRaw(t, q.Addr("smtp"), "x@test", []string{"postmaster@mx.test"}, "Subject: to postmaster\r\n\r\nhi\r\n")
	if n := len(mailFiles(t, q.dir, "carol")); n != 1 {
		t.Fatalf("web admin carol has %d files, want 1", n)
	}
}
