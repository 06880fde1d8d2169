package auth

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

var (
	hashOnce sync.Once
	testHash string // bcrypt $2a$ hash of "secret" at MinCost
)

// secretHash returns a MinCost bcrypt hash of "secret" with the given
// prefix ("$2a$", "$2b$" or "$2y$").
func secretHash(t testing.TB, prefix string) string {
	t.Helper()
	hashOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		testHash = string(h)
	})
	if !strings.HasPrefix(testHash, "$2a$") {
		t.Fatalf("bcrypt produced %q, want a $2a$ hash", testHash[:4])
	}
	return prefix + testHash[4:]
}

func TestParseUsers(t *testing.T) {
	h := secretHash(t, "$2a$")
	tests := []struct {
		name    string
		in      string
		users   []string // want Names(); nil when an error is expected
		wantErr string   // substring of the error
	}{
		{name: "empty", in: "", users: []string{}},
		{name: "comments and blanks", in: "# users\n\n  # indented\n\t\nbob:" + h + "\n", users: []string{"bob"}},
		{name: "no final newline", in: "bob:" + h, users: []string{"bob"}},
		{name: "CRLF", in: "# c\r\nbob:" + h + "\r\nalice:" + h + "\r\n", users: []string{"alice", "bob"}},
		{name: "surrounding blanks", in: "  bob:" + h + "  \n", users: []string{"bob"}},
		{name: "upper case folded", in: "Bob:" + h + "\nA:" + h + "\n", users: []string{"a", "bob"}},
		{name: "aliases", in: "bob:" + h + ":postmaster,Abuse\n", users: []string{"bob"}},
		{name: "empty alias field", in: "bob:" + h + ":\n", users: []string{"bob"}},
		{name: "names with dots and dashes", in: "j.doe_2-x:" + h + "\n", users: []string{"j.doe_2-x"}},
		{name: "no colon", in: "# c\nbob\n", wantErr: "users:2: malformed line"},
		{name: "too many fields", in: "bob:" + h + ":a:b\n", wantErr: "users:1: malformed line"},
		{name: "empty name", in: ":" + h + "\n", wantErr: "users:1: empty user name"},
		{name: "dot dot slash", in: "../x:" + h + "\n", wantErr: "users:1: invalid user name"},
		{name: "slash", in: "a/b:" + h + "\n", wantErr: "users:1: invalid user name"},
		{name: "dot dot", in: "a..b:" + h + "\n", wantErr: "invalid user name"},
		{name: "leading dot", in: ".a:" + h + "\n", wantErr: "invalid user name"},
		{name: "leading dash", in: "-a:" + h + "\n", wantErr: "invalid user name"},
		{name: "NUL", in: "a\x00b:" + h + "\n", wantErr: "invalid user name"},
		{name: "space inside", in: "a b:" + h + "\n", wantErr: "invalid user name"},
		{name: "non-ASCII", in: "jos\u00e9:" + h + "\n", wantErr: "invalid user name"},
		{name: "Kelvin sign is not k", in: "\u212aate:" + h + "\n", wantErr: "invalid user name"},
		{name: "65 chars", in: strings.Repeat("a", 65) + ":" + h + "\n", wantErr: "invalid user name"},
		{name: "64 chars", in: strings.Repeat("a", 64) + ":" + h + "\n", users: []string{strings.Repeat("a", 64)}},
		{name: "plain text password", in: "bob:secret\n", wantErr: "users:1: user bob: invalid hash"},
		{name: "md5 apr1 hash", in: "bob:$apr1$abcdefgh$0123456789012345678901\n", wantErr: "invalid hash"},
		{name: "unknown bcrypt variant", in: "bob:$2x$" + h[4:] + "\n", wantErr: "invalid hash"},
		{name: "truncated hash", in: "bob:" + h[:59] + "\n", wantErr: "invalid hash"},
		{name: "bad hash alphabet", in: "bob:" + h[:59] + "!\n", wantErr: "invalid hash"},
		{name: "cost too high", in: "bob:$2a$31$" + h[7:] + "\n", wantErr: "cost 31"},
		{name: "duplicate user", in: "bob:" + h + "\n# x\nBOB:" + h + "\n", wantErr: "users:3: duplicate user or alias \"bob\" (first on line 1)"},
		{name: "alias equals user", in: "bob:" + h + "\nalice:" + h + ":bob\n", wantErr: "users:2: user alice: duplicate user or alias \"bob\""},
		{name: "user equals alias", in: "alice:" + h + ":bob\nbob:" + h + "\n", wantErr: "users:2: duplicate user or alias \"bob\""},
		{name: "alias twice", in: "alice:" + h + ":pm\nbob:" + h + ":pm\n", wantErr: "users:2:"},
		{name: "invalid alias", in: "alice:" + h + ":../etc\n", wantErr: "users:1: user alice: invalid alias"},
		{name: "long line", in: "# " + strings.Repeat("x", MaxLineLength) + "\n", wantErr: "users:1: line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUsers(strings.NewReader(tt.in), "users")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := u.Names(); !slices.Equal(got, tt.users) && !(len(got) == 0 && len(tt.users) == 0) {
				t.Errorf("Names() = %q, want %q", got, tt.users)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	valid := []string{"a", "user", "j.doe", "a-b", "a_b", "0", "_x", strings.Repeat("z", 64)}
	invalid := []string{"", ".", "..", "../x", "a/b", "A", ".a", "-a", "a..b", "a\x00", "a b", "a+b", "a@b", "a:b", strings.Repeat("z", 65)}
	for _, n := range valid {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false, want true", n)
		}
	}
	for _, n := range invalid {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true, want false", n)
		}
	}
}

func TestLookupAndResolve(t *testing.T) {
	h := secretHash(t, "$2a$")
	u, err := ParseUsers(strings.NewReader("bob:"+h+":postmaster,abuse\nalice:"+h+"\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	if usr, ok := u.Lookup("BOB"); !ok || usr.Name != "bob" || usr.Hash != h || !slices.Equal(usr.Aliases, []string{"postmaster", "abuse"}) {
		t.Errorf("Lookup(BOB) = %+v, %v", usr, ok)
	}
	if _, ok := u.Lookup("postmaster"); ok {
		t.Error("Lookup follows aliases; it must not (aliases are not login names)")
	}
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"bob", "bob", true},
		{"Bob", "bob", true},
		{"ALICE", "alice", true},
		{"bob+lists", "bob", true},
		{"bob+", "bob", true},
		{"bob+a+b", "bob", true},
		{"Postmaster", "bob", true},
		{"abuse+x", "bob", true},
		{"carol", "", false},
		{"", "", false},
		{"+bob", "", false},
		{"bo", "", false},
		{"\u212aob", "", false},
	}
	for _, tt := range tests {
		got, ok := u.Resolve(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	var nilUsers *Users
	if _, ok := nilUsers.Resolve("bob"); ok || nilUsers.Verify("bob", "secret") || nilUsers.Len() != 0 {
		t.Error("a nil *Users must hold no accounts")
	}
}

func TestVerifyBcryptVariants(t *testing.T) {
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		t.Run(prefix, func(t *testing.T) {
			u, err := ParseUsers(strings.NewReader("bob:"+secretHash(t, prefix)+"\n"), "users")
			if err != nil {
				t.Fatal(err)
			}
			if !u.Verify("bob", "secret") {
				t.Error("Verify(bob, secret) = false")
			}
			if !u.Verify("BOB", "secret") {
				t.Error("Verify(BOB, secret) = false: names are case-insensitive")
			}
			if u.Verify("bob", "Secret") || u.Verify("bob", "") || u.Verify("bob", "secret\x00") {
				t.Error("Verify accepted a wrong password")
			}
			if u.Verify("alice", "secret") {
				t.Error("Verify accepted an unknown user")
			}
		})
	}
}

func TestVerifyAliasIsNotALogin(t *testing.T) {
	u, err := ParseUsers(strings.NewReader("bob:"+secretHash(t, "$2a$")+":pm\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	if u.Verify("pm", "secret") {
		t.Error("an alias logged in")
	}
}

// TestVerifyHtpasswd checks a hash written by Apache's htpasswd -B, when
// the tool is installed.
func TestVerifyHtpasswd(t *testing.T) {
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Skip("htpasswd (apache2-utils) not installed")
	}
	path := filepath.Join(t.TempDir(), "users")
	out, err := exec.Command(bin, "-B", "-C", "4", "-b", "-c", path, "Carol", "pa:ss w0rd").CombinedOutput()
	if err != nil {
		t.Fatalf("htpasswd: %v: %s", err, out)
	}
	u, err := LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	usr, ok := u.Lookup("carol")
	if !ok || !strings.HasPrefix(usr.Hash, "$2y$") {
		t.Fatalf("Lookup(carol) = %+v, %v; want a $2y$ hash", usr, ok)
	}
	if !u.Verify("carol", "pa:ss w0rd") || u.Verify("carol", "pa:ss") {
		t.Error("Verify of an htpasswd -B hash is wrong")
	}
}

func TestSingleUser(t *testing.T) {
	u := SingleUser("User", "pass")
	if got := u.Names(); !slices.Equal(got, []string{"user"}) {
		t.Fatalf("Names() = %q", got)
	}
	if !u.Verify("user", "pass") || !u.Verify("USER", "pass") {
		t.Error("Verify(user, pass) = false")
	}
	for _, bad := range [][2]string{{"user", "Pass"}, {"user", "pas"}, {"user", "pass "}, {"user", ""}, {"other", "pass"}} {
		if u.Verify(bad[0], bad[1]) {
			t.Errorf("Verify(%q, %q) = true", bad[0], bad[1])
		}
	}
	if got, ok := u.Resolve("user+tag"); !ok || got != "user" {
		t.Errorf("Resolve(user+tag) = %q, %v", got, ok)
	}
	if usr, ok := u.Lookup("user"); !ok || usr.Hash != "" {
		t.Errorf("Lookup(user) = %+v, %v; want no hash", usr, ok)
	}
	if bad := SingleUser("../x", "pass"); bad.Len() != 0 || bad.Verify("../x", "pass") {
		t.Error("SingleUser accepted an invalid name")
	}
}

func TestLoadUsersFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadUsersFile(filepath.Join(dir, "missing")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: err = %v", err)
	}
	path := filepath.Join(dir, "users")
	if err := os.WriteFile(path, []byte("# ok\nbad line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadUsersFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("err = %v, want it to start with %q", err, path+":2: ")
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func FuzzParseUsers(f *testing.F) {
	h := secretHash(f, "$2y$")
	for _, s := range []string{
		"", "\n", "# c\n", "bob:" + h + "\n", "bob:" + h + ":a,b\r\n", "bob\n", ":" + h,
		"bob:" + h + "\nbob:" + h + "\n", "a..b:x", "\x00:\x00", strings.Repeat("a:", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := ParseUsers(strings.NewReader(in), "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		for _, n := range u.Names() {
			if !ValidName(n) {
				t.Fatalf("accepted invalid name %q", n)
			}
			if got, ok := u.Resolve(n); !ok || got != n {
				t.Fatalf("Resolve(%q) = %q, %v", n, got, ok)
			}
		}
	})
}

// TestVerifyUnknownUserRunsBcrypt checks that a login for a name that does
// not exist still pays for a bcrypt comparison at the file's cost.
func TestVerifyUnknownUserRunsBcrypt(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), 5)
	if err != nil {
		t.Fatal(err)
	}
	u, err := ParseUsers(strings.NewReader("bob:"+string(h)+"\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	dummyMu.Lock()
	delete(dummyHashes, 5)
	dummyMu.Unlock()
	if u.Verify("nobody", "pw") {
		t.Fatal("unknown user verified")
	}
	dummyMu.Lock()
	dh, ok := dummyHashes[5]
	dummyMu.Unlock()
	if !ok {
		t.Fatal("no dummy comparison was made for an unknown user")
	}
	if c, err := bcrypt.Cost(dh); err != nil || c != 5 {
		t.Errorf("dummy hash cost = %d, %v; want the file's cost 5", c, err)
	}
}
