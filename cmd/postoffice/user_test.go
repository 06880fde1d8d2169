package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postoffice/internal/auth"
)

// runUserCmd runs "postoffice user ARGS..." with stdin and returns the
// exit status and outputs.
func runUserCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runUser(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunUserRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	f := "--users-file=" + path

	code, out, errs := runUserCmd(t, "first-pw\n", "add", f, "--password-stdin", "--cost", "4", "Alice")
	if code != 0 {
		t.Fatalf("add: exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "alice") || strings.Contains(out+errs, "first-pw") {
		t.Errorf("add output %q / %q: want the name and never the password", out, errs)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", fi.Mode().Perm())
	}

	// Flags after the name, CRLF line end, no trailing newline variants.
	if code, _, errs := runUserCmd(t, "bob-pw\r\n", "add", "bob", f, "--password-stdin", "--cost=4"); code != 0 {
		t.Fatalf("add bob: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := runUserCmd(t, "new-pw", "passwd", f, "--password-stdin", "--cost=4", "alice"); code != 0 {
		t.Fatalf("passwd: exit %d, stderr %q", code, errs)
	}

	u, err := auth.LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Verify("alice", "new-pw") || u.Verify("alice", "first-pw") {
		t.Error("passwd did not replace alice's password")
	}
	if !u.Verify("bob", "bob-pw") {
		t.Error("bob's password (sent with CRLF) does not verify")
	}
	// Each password has a "-", which bcrypt's alphabet lacks, so a hash
	// cannot contain one by chance (a bare "pw" can).
	data, _ := os.ReadFile(path)
	for _, pw := range []string{"first-pw", "new-pw", "bob-pw"} {
		if bytes.Contains(data, []byte(pw)) {
			t.Errorf("password %q is stored in clear", pw)
		}
	}

	code, out, _ = runUserCmd(t, "", "list", f)
	if code != 0 || out != "alice\nbob\n" {
		t.Errorf("list: exit %d, output %q", code, out)
	}

	if code, _, errs := runUserCmd(t, "", "del", f, "alice"); code != 0 {
		t.Fatalf("del: exit %d, stderr %q", code, errs)
	}
	code, out, _ = runUserCmd(t, "", "list", f)
	if code != 0 || out != "bob\n" {
		t.Errorf("list after del: exit %d, output %q", code, out)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left in %s: %d entries", dir, len(ents))
	}
}

func TestRunUserEnvDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "from-env")
	t.Setenv("POSTOFFICE_USERS_FILE", path)
	if code, _, errs := runUserCmd(t, "pw\n", "add", "--password-stdin", "--cost=4", "carol"); code != 0 {
		t.Fatalf("add: exit %d, stderr %q", code, errs)
	}
	if names, err := auth.ListUsers(path); err != nil || len(names) != 1 || names[0] != "carol" {
		t.Errorf("users in $POSTOFFICE_USERS_FILE: %q, %v", names, err)
	}
}

func TestRunUserErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	f := "--users-file=" + path
	if code, _, errs := runUserCmd(t, "pw\n", "add", f, "--password-stdin", "--cost=4", "dave"); code != 0 {
		t.Fatalf("add: exit %d, stderr %q", code, errs)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		err   string // substring of stderr
	}{
		{"no subcommand", "", nil, 2, "Usage"},
		{"unknown subcommand", "", []string{"rename"}, 2, "unknown command"},
		{"unknown flag", "", []string{"list", "--bogus"}, 2, "bogus"},
		{"list with args", "", []string{"list", f, "x"}, 2, "no arguments"},
		{"add without name", "pw\n", []string{"add", f, "--password-stdin"}, 2, "exactly one"},
		{"two names", "pw\n", []string{"add", f, "--password-stdin", "a", "b"}, 2, "exactly one"},
		{"del has no password flag", "", []string{"del", f, "--password-stdin", "dave"}, 2, "password-stdin"},
		{"bad cost", "pw\n", []string{"add", f, "--password-stdin", "--cost=40", "erin"}, 2, "--cost"},
		{"no terminal", "pw\npw\n", []string{"add", f, "erin"}, 2, "--password-stdin"},
		{"invalid name", "pw\n", []string{"add", f, "--password-stdin", "../etc"}, 1, "invalid user name"},
		{"exists", "pw\n", []string{"add", f, "--password-stdin", "--cost=4", "DAVE"}, 1, "already exists"},
		{"empty password", "\n", []string{"add", f, "--password-stdin", "erin"}, 1, "empty password"},
		{"no password", "", []string{"add", f, "--password-stdin", "erin"}, 1, "no password"},
		{"long password", strings.Repeat("p", 73) + "\n", []string{"add", f, "--password-stdin", "erin"}, 1, "longer than 72"},
		{"passwd unknown", "pw\n", []string{"passwd", f, "--password-stdin", "--cost=4", "erin"}, 1, "no such user"},
		{"del unknown", "", []string{"del", f, "erin"}, 1, "no such user"},
		{"list missing file", "", []string{"list", "--users-file=" + path + ".missing"}, 1, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runUserCmd(t, tt.stdin, tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.err) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errs, tt.code, tt.err)
			}
			if tt.code == 1 && strings.Count(errs, "\n") != 1 {
				t.Errorf("error is not one line: %q", errs)
			}
			if strings.Contains(errs, "pppp") {
				t.Error("password echoed in an error")
			}
		})
	}
	if names, err := auth.ListUsers(path); err != nil || len(names) != 1 {
		t.Errorf("failed commands changed the file: %q, %v", names, err)
	}
	if code, out, _ := runUserCmd(t, "", "help"); code != 0 || !strings.Contains(out, "user add") {
		t.Errorf("help: exit %d, %q", code, out)
	}
}
