package auth

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// assertOnlyFile checks that dir holds exactly the named files: no
// temporary file is left behind.
func assertOnlyFile(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Errorf("directory holds %q, want %q", got, names)
	}
}

func assertMode0600(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestManageRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")

	// AddUser creates a missing file, mode 0600.
	if err := AddUser(path, "Alice", "alice-pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	assertMode0600(t, path)
	assertOnlyFile(t, dir, "users")

	// Hand edits: comments, blank lines and an alias line survive.
	data, _ := os.ReadFile(path)
	hand := "# Postoffice users\n\n" + string(data) + "  # bob is the postmaster\nbob:" + secretHash(t, "$2y$") + ":postmaster\n# trailing comment"
	if err := os.WriteFile(path, []byte(hand), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := AddUser(path, "carol", "carol-pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	for _, dup := range []string{"alice", "ALICE", "bob", "postmaster"} {
		if err := AddUser(path, dup, "x", bcrypt.MinCost); !errors.Is(err, ErrUserExists) {
			t.Errorf("AddUser(%s) = %v, want ErrUserExists", dup, err)
		}
	}
	if err := SetPassword(path, "BOB", "new-bob-pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "dave", "x", bcrypt.MinCost); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("SetPassword(dave) = %v, want ErrNoSuchUser", err)
	}
	if err := DeleteUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteUser(path, "alice"); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("second DeleteUser(alice) = %v, want ErrNoSuchUser", err)
	}
	if err := DeleteUser(path, "postmaster"); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("DeleteUser(alias) = %v, want ErrNoSuchUser", err)
	}

	names, err := ListUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"bob", "carol"}) {
		t.Errorf("ListUsers = %q", names)
	}

	data, _ = os.ReadFile(path)
	lines := strings.Split(string(data), "\n")
	want := []string{"# Postoffice users", "", "  # bob is the postmaster", "bob:$2a$", "# trailing comment", "carol:$2a$", ""}
	if len(lines) != len(want) {
		t.Fatalf("file is\n%s\nwant %d lines", data, len(want)-1)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], want[i])
		}
	}
	if !strings.HasSuffix(lines[3], ":postmaster") {
		t.Errorf("SetPassword lost bob's alias: %q", lines[3])
	}
	// The passwords contain "-", which bcrypt's alphabet lacks: a hash
	// cannot contain them by chance (a bare "pw" can, once in ~40 runs).
	for _, pw := range []string{"alice-pw", "carol-pw", "new-bob-pw"} {
		if strings.Contains(string(data), pw) {
			t.Errorf("password %q appears in the file in clear", pw)
		}
	}
	assertMode0600(t, path) // hand-set 0644 is tightened back
	assertOnlyFile(t, dir, "users")

	u, err := LoadUsersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Verify("bob", "new-bob-pw") || u.Verify("bob", "secret") {
		t.Error("SetPassword did not change bob's password")
	}
	if !u.Verify("carol", "carol-pw") || u.Verify("alice", "alice-pw") {
		t.Error("AddUser/DeleteUser results do not verify as expected")
	}
	if got, ok := u.Resolve("postmaster"); !ok || got != "bob" {
		t.Errorf("Resolve(postmaster) = %q, %v", got, ok)
	}
}

func TestManageRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	for _, name := range []string{"", "../x", "a/b", ".hidden", strings.Repeat("a", 65)} {
		if err := AddUser(path, name, "pw", bcrypt.MinCost); !errors.Is(err, ErrInvalidName) {
			t.Errorf("AddUser(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	if err := AddUser(path, "bob", "", bcrypt.MinCost); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("empty password: %v", err)
	}
	if err := AddUser(path, "bob", strings.Repeat("p", 73), bcrypt.MinCost); !errors.Is(err, ErrLongPassword) {
		t.Errorf("long password: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("a refused AddUser created the file")
	}
	if err := SetPassword(path, "bob", "pw", bcrypt.MinCost); err == nil {
		t.Error("SetPassword on a missing file succeeded")
	}
	if _, err := ListUsers(path); err == nil {
		t.Error("ListUsers on a missing file succeeded")
	}

	// A file that does not parse is not edited.
	broken := "bob:plaintext\n"
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	err := AddUser(path, "carol", "pw", bcrypt.MinCost)
	if err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Errorf("AddUser on a broken file = %v, want a file:line error", err)
	}
	if data, _ := os.ReadFile(path); string(data) != broken {
		t.Errorf("broken file was changed to %q", data)
	}
	assertOnlyFile(t, dir, "users")
}

func TestManageFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real-users")
	link := filepath.Join(dir, "users")
	if err := AddUser(target, "alice", "pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real-users", link); err != nil {
		t.Skip(err)
	}
	if err := AddUser(link, "bob", "pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced by a file")
	}
	names, err := ListUsers(target)
	if err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Errorf("target holds %q, %v", names, err)
	}
}

// TestManageConcurrentAdds checks that concurrent editors do not lose each
// other's lines (the directory lock).
func TestManageConcurrentAdds(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- AddUser(path, "user"+string(rune('a'+i)), "pw", bcrypt.MinCost)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	names, err := ListUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n {
		t.Errorf("ListUsers = %q, want %d users", names, n)
	}
	assertOnlyFile(t, dir, "users")
}
