// Package auth holds Postoffice's user accounts and credential checks: the
// users file, password verification, and the per-IP throttle applied to
// failed logins by both the SMTP and the POP3 engines.
//
// # The users file
//
// The users file is a text file in the spirit of Apache's htpasswd, so that
// `htpasswd -B` can manage it as well as `postoffice user`:
//
//	# Comments start with '#'; blank lines are ignored.
//	alice:$2y$10$...53 more characters...
//	bob:$2a$10$...:postmaster,abuse
//
// Each account is one line of two or three colon-separated fields:
//
//   - name: the user name, which is also the mailbox directory name and the
//     local part that mail is addressed to. Names are case-insensitive and
//     kept in lower case; see [ValidName] for the characters allowed.
//   - hash: a bcrypt hash with the prefix $2a$, $2b$ or $2y$ (the three
//     spellings of the same algorithm; htpasswd -B writes $2y$), a cost from
//     4 to [MaxHashCost], 60 characters in all.
//   - aliases (optional): comma-separated extra local parts that are
//     delivered to this user. Each must be a valid name and may not collide
//     with another user or alias.
//
// Leading and trailing blanks and a CR before the LF are ignored, so files
// edited on Windows work. A line longer than [MaxLineLength] bytes, a file
// larger than [MaxFileSize] bytes, a malformed line, an invalid name or
// hash, or a duplicate user or alias make the whole file invalid; the error
// names the place as "file:line: reason".
//
// A [Users] value is an immutable snapshot of a parsed file; a [UsersFile]
// re-reads the file when it changes (polling) or when asked (SIGHUP), and
// keeps serving the previous snapshot when an edit breaks the file.
package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Limits of the users file format.
const (
	// MaxNameLength is the longest user name or alias, in bytes.
	MaxNameLength = 64
	// MaxLineLength is the longest line accepted in a users file.
	MaxLineLength = 4096
	// MaxFileSize is the largest users file accepted.
	MaxFileSize = 64 << 20
	// MaxHashCost is the highest bcrypt cost accepted in a users file (the
	// same upper bound as htpasswd -C). Higher costs would let one login
	// attempt occupy a CPU for minutes.
	MaxHashCost = 17
	// MaxPasswordLength is the longest password bcrypt can hash; longer
	// passwords are refused when setting a password.
	MaxPasswordLength = 72
)

// User is one account of a users file.
type User struct {
	// Name is the lower-case user name, also its mailbox name.
	Name string
	// Aliases are extra lower-case local parts delivered to this user.
	Aliases []string
	// Hash is the bcrypt hash as written in the file. It is empty for the
	// account made by [SingleUser].
	Hash string
}

// Users is an immutable snapshot of user accounts. Its methods are safe for
// concurrent use. The zero value and a nil *Users hold no accounts.
type Users struct {
	users   map[string]User   // by lower-case name
	aliases map[string]string // lower-case alias -> user name
	names   []string          // sorted user names
	maxCost int               // highest bcrypt cost in use, for the dummy compare

	// single-user mode (SingleUser): SHA-256 of the password.
	single     bool
	singleHash [sha256.Size]byte
}

// ValidName reports whether name may be a user name or alias: 1 to
// [MaxNameLength] bytes of lower-case ASCII letters, digits, '.', '_' and
// '-', not starting with '.' or '-' and without "..". Such a name can be
// used as a directory name without escaping the mail root, and can never be
// ".", "..", or contain a '/' or NUL. Callers fold case with [CanonicalName]
// first.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLength {
		return false
	}
	if name[0] == '.' || name[0] == '-' || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// CanonicalName folds the ASCII letters of name to lower case. Only ASCII
// is folded: Unicode case mapping would turn, for example, the Kelvin sign
// U+212A into 'k' and let two spellings reach one mailbox.
func CanonicalName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// checkHash reports why hash is not a bcrypt hash this package accepts, or
// returns its cost.
func checkHash(hash string) (int, error) {
	if len(hash) != 60 {
		return 0, errors.New("invalid hash: not a bcrypt hash of 60 characters")
	}
	switch hash[:4] {
	case "$2a$", "$2b$", "$2y$":
	default:
		return 0, errors.New("invalid hash: want a bcrypt hash starting with $2a$, $2b$ or $2y$")
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil || hash[6] != '$' {
		return 0, errors.New("invalid hash: malformed bcrypt cost")
	}
	if cost < bcrypt.MinCost || cost > MaxHashCost {
		return 0, fmt.Errorf("invalid hash: bcrypt cost %d outside %d..%d", cost, bcrypt.MinCost, MaxHashCost)
	}
	for i := 7; i < len(hash); i++ {
		c := hash[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '/') {
			return 0, errors.New("invalid hash: character outside the bcrypt alphabet")
		}
	}
	return cost, nil
}

// line is one parsed account line.
type line struct {
	user User
	cost int
}

// parseLine parses one line of a users file. It returns ok=false for
// blank and comment lines.
func parseLine(s string) (l line, ok bool, err error) {
	s = strings.Trim(s, " \t\r")
	if s == "" || s[0] == '#' {
		return line{}, false, nil
	}
	fields := strings.Split(s, ":")
	if len(fields) < 2 || len(fields) > 3 {
		return line{}, false, errors.New("malformed line: want name:hash or name:hash:aliases")
	}
	name := CanonicalName(strings.TrimSpace(fields[0]))
	if name == "" {
		return line{}, false, errors.New("empty user name")
	}
	if !ValidName(name) {
		return line{}, false, fmt.Errorf("invalid user name %q", name)
	}
	hash := strings.TrimSpace(fields[1])
	cost, err := checkHash(hash)
	if err != nil {
		return line{}, false, fmt.Errorf("user %s: %w", name, err)
	}
	u := User{Name: name, Hash: hash}
	if len(fields) == 3 {
		for a := range strings.SplitSeq(fields[2], ",") {
			a = CanonicalName(strings.TrimSpace(a))
			if a == "" {
				continue // tolerate "a,,b" and a trailing comma
			}
			if !ValidName(a) {
				return line{}, false, fmt.Errorf("user %s: invalid alias %q", name, a)
			}
			u.Aliases = append(u.Aliases, a)
		}
	}
	return line{user: u, cost: cost}, true, nil
}

// builder accumulates accounts and detects duplicates.
type builder struct {
	u     *Users
	where map[string]int // name or alias -> line number that claimed it
}

func newBuilder() *builder {
	return &builder{
		u:     &Users{users: make(map[string]User), aliases: make(map[string]string)},
		where: make(map[string]int),
	}
}

func (b *builder) add(l line, lineno int) error {
	u := l.user
	if prev, dup := b.where[u.Name]; dup {
		return fmt.Errorf("duplicate user or alias %q (first on line %d)", u.Name, prev)
	}
	b.where[u.Name] = lineno
	for _, a := range u.Aliases {
		if prev, dup := b.where[a]; dup {
			return fmt.Errorf("user %s: duplicate user or alias %q (first on line %d)", u.Name, a, prev)
		}
		b.where[a] = lineno
		b.u.aliases[a] = u.Name
	}
	b.u.users[u.Name] = u
	b.u.names = append(b.u.names, u.Name)
	b.u.maxCost = max(b.u.maxCost, l.cost)
	return nil
}

func (b *builder) done() *Users {
	slices.Sort(b.u.names)
	return b.u
}

// ParseUsers parses a users file (see the package documentation) read from
// r. filename is used only in error messages, which have the form
// "filename:line: reason".
func ParseUsers(r io.Reader, filename string) (*Users, error) {
	b := newBuilder()
	err := scanLines(r, filename, func(lineno int, s string) error {
		l, ok, err := parseLine(s)
		if err != nil || !ok {
			return err
		}
		return b.add(l, lineno)
	})
	if err != nil {
		return nil, err
	}
	return b.done(), nil
}

// scanLines calls fn for each line of r (without its LF), enforcing
// MaxLineLength and MaxFileSize. Errors from fn or from reading are
// prefixed with "filename:line: ".
func scanLines(r io.Reader, filename string, fn func(lineno int, s string) error) error {
	lr := &io.LimitedReader{R: r, N: MaxFileSize + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 512), MaxLineLength+2) // + CR LF
	lineno := 0
	for sc.Scan() {
		lineno++
		if lr.N <= 0 {
			return fmt.Errorf("%s: file larger than %d bytes", filename, MaxFileSize)
		}
		if len(strings.TrimRight(sc.Text(), "\r")) > MaxLineLength {
			return fmt.Errorf("%s:%d: line longer than %d bytes", filename, lineno, MaxLineLength)
		}
		if err := fn(lineno, sc.Text()); err != nil {
			return fmt.Errorf("%s:%d: %w", filename, lineno, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s:%d: line longer than %d bytes", filename, lineno+1, MaxLineLength)
		}
		return fmt.Errorf("%s:%d: %w", filename, lineno+1, err)
	}
	if lr.N <= 0 {
		return fmt.Errorf("%s: file larger than %d bytes", filename, MaxFileSize)
	}
	return nil
}

// LoadUsersFile reads and parses the users file at path.
func LoadUsersFile(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	return ParseUsers(f, path)
}

// SingleUser returns the accounts of the zero-configuration mode: one user
// with the given name and password and no aliases.
//
// The password is kept in memory only as its SHA-256 digest and checked by
// comparing digests with [subtle.ConstantTimeCompare], which takes the same
// time whatever the password's length or content. There is no bcrypt here:
// the password is not stored on disk, so a slow hash would protect nothing
// and only make every login slow. The name is folded to lower case; it
// must be a valid name, or the returned Users holds no account.
func SingleUser(name, password string) *Users {
	b := newBuilder()
	name = CanonicalName(name)
	if ValidName(name) {
		b.add(line{user: User{Name: name}}, 1) // cannot fail on an empty builder
	}
	b.u.single = true
	b.u.singleHash = sha256.Sum256([]byte(password))
	return b.done()
}

// Lookup returns the account named name (case-insensitive). It does not
// follow aliases; see [Users.Resolve].
func (u *Users) Lookup(name string) (User, bool) {
	if u == nil {
		return User{}, false
	}
	usr, ok := u.users[CanonicalName(name)]
	if ok {
		usr.Aliases = slices.Clone(usr.Aliases)
	}
	return usr, ok
}

// Names returns the user names in sorted order. The caller may modify the
// returned slice.
func (u *Users) Names() []string {
	if u == nil {
		return nil
	}
	return slices.Clone(u.names)
}

// Len returns the number of accounts.
func (u *Users) Len() int {
	if u == nil {
		return 0
	}
	return len(u.names)
}

// Resolve maps the local part of a recipient address to the user whose
// mailbox receives it: the local part is folded to lower case, a "+tag"
// suffix is removed (subaddressing, as Postfix's recipient_delimiter=+),
// and the result is looked up as a user name, then as an alias. It reports
// false when no account matches. Quoted local parts are the caller's to
// unquote.
func (u *Users) Resolve(localPart string) (user string, ok bool) {
	if u == nil {
		return "", false
	}
	lp := CanonicalName(localPart)
	if i := strings.IndexByte(lp, '+'); i >= 0 {
		lp = lp[:i]
	}
	if _, ok := u.users[lp]; ok {
		return lp, true
	}
	if name, ok := u.aliases[lp]; ok {
		return name, true
	}
	return "", false
}

// Verify reports whether password is the password of the user name
// (case-insensitive; aliases are not login names). When the user does not
// exist it still runs a bcrypt comparison against a dummy hash of the
// highest cost in the file, so that the time taken does not reveal whether
// a name exists.
func (u *Users) Verify(name, password string) bool {
	if u == nil {
		return false
	}
	usr, found := u.users[CanonicalName(name)]
	if u.single {
		sum := sha256.Sum256([]byte(password))
		match := subtle.ConstantTimeCompare(sum[:], u.singleHash[:]) == 1
		return found && match
	}
	if !found {
		bcrypt.CompareHashAndPassword(dummyHash(u.dummyCost()), []byte(password))
		return false
	}
	// golang.org/x/crypto/bcrypt accepts the $2b$ and $2y$ prefixes as
	// written (they name the same algorithm as $2a$), so htpasswd -B
	// hashes need no rewriting.
	return bcrypt.CompareHashAndPassword([]byte(usr.Hash), []byte(password)) == nil
}

// dummyCost is the bcrypt cost of the comparison made for unknown users:
// the highest cost in the file, so that it takes at least as long as the
// check of a real user.
func (u *Users) dummyCost() int {
	if u.maxCost == 0 {
		return bcrypt.DefaultCost
	}
	return u.maxCost
}

var (
	dummyMu     sync.Mutex
	dummyHashes = map[int][]byte{}
)

// dummyHash returns a bcrypt hash of a random password at the given cost,
// computed once per cost and cached.
func dummyHash(cost int) []byte {
	dummyMu.Lock()
	defer dummyMu.Unlock()
	if h, ok := dummyHashes[cost]; ok {
		return h
	}
	var pw [16]byte
	// A fixed, never-used password: what matters is the cost, not secrecy,
	// since a hash that matches nobody's password grants nothing.
	copy(pw[:], "postoffice-dummy")
	h, err := bcrypt.GenerateFromPassword(pw[:], cost)
	if err != nil {
		// cost comes from checkHash, so this cannot happen; fall back to
		// a cost that is valid.
		h, _ = bcrypt.GenerateFromPassword(pw[:], bcrypt.DefaultCost)
	}
	dummyHashes[cost] = h
	return h
}
