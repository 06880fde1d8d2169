package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/store"
	"postoffice/internal/store/maildir"
	"postoffice/internal/testsupport"
)

// runCmd runs "postoffice ARGS..." in process.
func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// quietArgs are listen addresses that do not collide with a server
// running on the machine.
var quietArgs = []string{"--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0", "--imap-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}

func TestVersionPrintsBuildInfo(t *testing.T) {
	code, out, _ := runCmd(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "postoffice ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "commit ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "po.toml")
	os.WriteFile(file, []byte("max-recipients = 50\npassword = \"hunter2\"\n"), 0o600)
	code, out, errs := runCmd(t, "", "config", "--config", file, "--log-level", "debug")
	if code != 0 {
		t.Fatalf("config: %d %s", code, errs)
	}
	for _, want := range []string{"# read from " + file, "max-recipients = 50", `log-level = "debug"`, `password = "********"`} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "smtp-addr") {
		t.Errorf("config output:\n%s", out)
	}
	if code, out, _ := runCmd(t, "", "config", "--all"); code != 0 || !strings.Contains(out, `smtp-addr = "127.0.0.1:2525"`) {
		t.Errorf("config --all: %d\n%s", code, out)
	}
	os.WriteFile(file, []byte("\nsmtp-adress = \"x\"\n"), 0o600)
	code, _, errs = runCmd(t, "", "config", "--config", file)
	if code != 2 || !strings.Contains(errs, file+":2: unknown key \"smtp-adress\"") {
		t.Errorf("unknown key: %d %q", code, errs)
	}
}

// "postoffice config" with no flags and nothing set prints what it
// shows and that every setting has its default, like "doveconf -n", and
// the output reads back as a --config file; one setting changed is listed
// under the same heading.
func TestConfigWithoutFlagsSaysAllDefaults(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "POSTOFFICE_") {
			t.Setenv(name, "") // restored after the test
			os.Unsetenv(name)
		}
	}
	code, out, errs := runCmd(t, "", "config")
	if code != 0 || errs != "" {
		t.Fatalf("config: %d %q", code, errs)
	}
	want := "# the settings that differ from the defaults (--all prints every setting)\n# none: every setting has its default value\n"
	if out != want {
		t.Errorf("config without flags:\n%s\nwant:\n%s", out, want)
	}
	file := filepath.Join(t.TempDir(), "po.toml")
	os.WriteFile(file, []byte(out), 0o600)
	if code, _, errs := runCmd(t, "", "config", "--config", file); code != 0 {
		t.Errorf("output does not read back: %d %s", code, errs)
	}
	code, out, _ = runCmd(t, "", "config", "--max-errors", "3")
	if code != 0 || out != "# the settings that differ from the defaults (--all prints every setting)\nmax-errors = 3\n" {
		t.Errorf("config --max-errors 3: %d\n%s", code, out)
	}
	if code, out, _ := runCmd(t, "", "config", "--all"); code != 0 || !strings.HasPrefix(out, "# every setting, the defaults included\n") {
		t.Errorf("config --all: %d\n%s", code, out)
	}
}

// TestCheckCatchesEachProblem runs "postoffice check" on a good setup,
// then breaks one thing at a time and expects one line naming it.
func TestCheckCatchesEachProblem(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), 4)
	os.WriteFile(users, []byte("bob:"+string(hash)+"\n"), 0o600)
	cert, key := testsupport.CertFiles(t, dir, "mx.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	mail := filepath.Join(dir, "mail")
	os.Mkdir(mail, 0o700)
	good := append([]string{"check", "--mailbox-dir", mail, "--users-file", users, "--tls-cert", cert, "--tls-key", key}, quietArgs...)

	code, out, errs := runCmd(t, "", good...)
	if code != 0 || out != "ok\n" {
		t.Fatalf("good setup: %d %q %q", code, out, errs)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	expired, expiredKey := testsupport.CertFiles(t, t.TempDir(), "mx.test", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	badUsers := filepath.Join(dir, "bad-users")
	os.WriteFile(badUsers, []byte("bob:not-a-bcrypt-hash\n"), 0o600)
	aFile := filepath.Join(dir, "a-file")
	os.WriteFile(aFile, nil, 0o600)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)

	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"invalid setting", []string{"--max-line-length", "100"}, "config: --max-line-length"},
		{"users file missing", []string{"--users-file", filepath.Join(dir, "nope")}, "users-file: "},
		{"users file malformed", []string{"--users-file", badUsers}, "users-file: "},
		{"catch-all unknown", []string{"--catch-all", "carol"}, `catch-all: "carol" is not a user`},
		{"tls key pair unreadable", []string{"--tls-cert", garbage}, "tls-cert: "},
		{"tls certificate expired", []string{"--tls-cert", expired, "--tls-key", expiredKey}, "certificate expired"},
		{"port in use", []string{"--smtp-addr", busy.Addr().String()}, "smtp-addr: cannot listen on " + busy.Addr().String()},
		{"http port in use", []string{"--http-addr", busy.Addr().String()}, "http-addr: cannot listen"},
		{"imap port in use", []string{"--imap-addr", busy.Addr().String()}, "imap-addr: cannot listen"},
		{"metrics port in use", []string{"--metrics-addr", busy.Addr().String()}, "metrics-addr: cannot listen"},
		{"mailbox dir is a file", []string{"--mailbox-dir", aFile}, "mailbox-dir: " + aFile + " is not a directory"},
		{"mailbox dir cannot be created", []string{"--mailbox-dir", filepath.Join(aFile, "mail")}, "cannot be created"},
	} {
		args := append(append([]string{}, good...), tc.extra...)
		code, out, _ := runCmd(t, "", args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%s: exit %d, output %q, want one line with %q", tc.name, code, out, tc.want)
		}
	}

	// Several problems: one line each.
	code, out, _ = runCmd(t, "", append(append([]string{}, good...), "--users-file", badUsers, "--smtp-addr", busy.Addr().String())...)
	if n := strings.Count(out, "\n"); code != 1 || n != 2 {
		t.Errorf("two problems: exit %d, %d lines: %q", code, n, out)
	}
}

// TestCheckMailboxOnAnotherFilesystem: a mailbox whose new/ is on another
// filesystem breaks the tmp/ -> new/ hard link of delivery.
func TestCheckMailboxOnAnotherFilesystem(t *testing.T) {
	mail := filepath.Join(t.TempDir(), "mail")
	other, err := os.MkdirTemp("/dev/shm", "po-check-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	defer os.RemoveAll(other)
	var a, b syscall.Stat_t
	os.MkdirAll(filepath.Join(mail, "bob", "tmp"), 0o700)
	if syscall.Stat(mail, &a) != nil || syscall.Stat(other, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is on the filesystem of the temporary directory")
	}
	os.Mkdir(filepath.Join(mail, "bob", "cur"), 0o700)
	if err := os.Symlink(other, filepath.Join(mail, "bob", "new")); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, "", append([]string{"check", "--mailbox-dir", mail}, quietArgs...)...)
	if code != 1 || !strings.Contains(out, "bob/new is on another filesystem") {
		t.Errorf("exit %d %q", code, out)
	}
}

func deliverTo(t *testing.T, st store.Deliverer, mailbox, msg string) string {
	t.Helper()
	id := st.NewID()
	if err := st.Deliver(context.Background(), id, []string{mailbox}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestMailboxCommands(t *testing.T) {
	mail := filepath.Join(t.TempDir(), "mail")
	st, err := maildir.New(mail, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	deliverTo(t, st, "bob", "From: Alice <alice@example.org>\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\nDate: Mon, 2 Jan 2006 15:04:05 -0700\r\n\r\nhi\r\n")
	newest := deliverTo(t, st, "bob", "From: carol@example.org\r\nSubject: second\r\n\r\nyo\r\n")
	deliverTo(t, st, "dave", "Subject: x\r\n\r\n\r\n")
	mb := "--mailbox-dir=" + mail

	code, out, errs := runCmd(t, "", "mailbox", "list", mb)
	if code != 0 || !regexpMatch(`(?m)^bob\s+2\s`, out) || !regexpMatch(`(?m)^dave\s+1\s`, out) {
		t.Errorf("list: %d %q %q", code, out, errs)
	}
	code, out, errs = runCmd(t, "", "mailbox", "show", mb, "Bob")
	if code != 0 || !strings.Contains(out, "mailbox bob: 2 messages") || !strings.Contains(out, "café") ||
		!strings.Contains(out, "Alice <alice@example.org>") || !strings.Contains(out, "02 Jan 2006") || !strings.Contains(out, newest) {
		t.Errorf("show: %d\n%s%s", code, out, errs)
	}
	// Newest first.
	if strings.Index(out, "second") > strings.Index(out, "café") {
		t.Errorf("show order:\n%s", out)
	}
	if code, out, _ := runCmd(t, "", "mailbox", "show", mb, "-n", "1", "bob"); code != 0 || strings.Contains(out, "café") {
		t.Errorf("show -n 1: %d\n%s", code, out)
	}
	if code, _, errs := runCmd(t, "", "mailbox", "show", mb, "nobody"); code != 1 || !strings.Contains(errs, "no mailbox nobody") {
		t.Errorf("show nobody: %d %q", code, errs)
	}

	// purge: needs --yes without a terminal; refuses while locked.
	if code, _, errs := runCmd(t, "y\n", "mailbox", "purge", mb, "bob"); code != 1 || !strings.Contains(errs, "--yes") {
		t.Errorf("purge without --yes: %d %q", code, errs)
	}
	md, err := st.OpenMaildrop("bob")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd(t, "", "mailbox", "purge", mb, "--yes", "bob"); code != 1 || !strings.Contains(errs, "in use") {
		t.Errorf("purge while locked: %d %q", code, errs)
	}
	md.Close()
	if l, _ := st.List("bob"); len(l) != 2 {
		t.Fatalf("purge removed mail: %d left", len(l))
	}
	if code, out, errs := runCmd(t, "", "mailbox", "purge", mb, "--yes", "bob"); code != 0 || !strings.Contains(out, "removed 2 messages") {
		t.Errorf("purge: %d %q %q", code, out, errs)
	}
	if l, _ := st.List("bob"); len(l) != 0 {
		t.Errorf("purge left %d", len(l))
	}
	if l, _ := st.List("dave"); len(l) != 1 {
		t.Errorf("purge touched another mailbox")
	}
	if code, _, _ := runCmd(t, "", "mailbox", "frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: %d", code)
	}
	if code, _, _ := runCmd(t, "", "mailbox", "show", mb); code != 2 {
		t.Errorf("show without user: %d", code)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
