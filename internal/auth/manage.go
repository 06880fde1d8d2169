package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Errors returned by the users file management functions.
var (
	ErrUserExists    = errors.New("user already exists")
	ErrNoSuchUser    = errors.New("no such user")
	ErrInvalidName   = errors.New("invalid user name: want 1-64 characters of a-z 0-9 . _ - not starting with . or - and without ..")
	ErrEmptyPassword = errors.New("empty password")
	ErrLongPassword  = fmt.Errorf("password longer than %d bytes", MaxPasswordLength)
)

// usersFileMode is the permission of a users file written by this package.
const usersFileMode = 0o600

// AddUser adds the user name with password to the users file at path,
// hashing the password with bcrypt at cost (a cost below bcrypt.MinCost
// means bcrypt.DefaultCost). It creates the file with mode 0600 if it does
// not exist, and fails with [ErrUserExists] if name is already a user or
// an alias. Other lines, comments included, are kept as they are.
func AddUser(path, name, password string, cost int) error {
	name = CanonicalName(name)
	if !ValidName(name) {
		return ErrInvalidName
	}
	hash, err := hashPassword(password, cost)
	if err != nil {
		return err
	}
	return editUsersFile(path, true, func(lines []string, u *Users) ([]string, error) {
		if _, ok := u.Resolve(name); ok {
			return nil, fmt.Errorf("%s: %w", name, ErrUserExists)
		}
		return append(lines, name+":"+hash), nil
	})
}

// SetPassword replaces the password of the user name in the users file at
// path, keeping the user's aliases and every other line. It fails with
// [ErrNoSuchUser] if there is no such user.
func SetPassword(path, name, password string, cost int) error {
	name = CanonicalName(name)
	if !ValidName(name) {
		return ErrInvalidName
	}
	hash, err := hashPassword(password, cost)
	if err != nil {
		return err
	}
	return editUsersFile(path, false, func(lines []string, u *Users) ([]string, error) {
		i := findUserLine(lines, name)
		if i < 0 {
			return nil, fmt.Errorf("%s: %w", name, ErrNoSuchUser)
		}
		fields := strings.Split(strings.Trim(lines[i], " \t\r"), ":")
		fields[0] = name
		fields[1] = hash
		lines[i] = strings.Join(fields, ":")
		return lines, nil
	})
}

// DeleteUser removes the user name (and so the user's aliases) from the
// users file at path, keeping every other line. It fails with
// [ErrNoSuchUser] if there is no such user. The user's mailbox is left on
// disk.
func DeleteUser(path, name string) error {
	name = CanonicalName(name)
	if !ValidName(name) {
		return ErrInvalidName
	}
	return editUsersFile(path, false, func(lines []string, u *Users) ([]string, error) {
		i := findUserLine(lines, name)
		if i < 0 {
			return nil, fmt.Errorf("%s: %w", name, ErrNoSuchUser)
		}
		return append(lines[:i], lines[i+1:]...), nil
	})
}

// ListUsers returns the sorted user names of the users file at path.
func ListUsers(path string) ([]string, error) {
	u, err := LoadUsersFile(path)
	if err != nil {
		return nil, err
	}
	return u.Names(), nil
}

// hashPassword checks password and returns its bcrypt hash.
func hashPassword(password string, cost int) (string, error) {
	if password == "" {
		return "", ErrEmptyPassword
	}
	if len(password) > MaxPasswordLength {
		return "", ErrLongPassword
	}
	if cost < bcrypt.MinCost {
		cost = bcrypt.DefaultCost
	}
	if cost > MaxHashCost {
		return "", fmt.Errorf("bcrypt cost %d above the maximum of %d", cost, MaxHashCost)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// findUserLine returns the index of the account line of name, or -1. The
// lines are known to parse.
func findUserLine(lines []string, name string) int {
	for i, s := range lines {
		if l, ok, err := parseLine(s); err == nil && ok && l.user.Name == name {
			return i
		}
	}
	return -1
}

// editUsersFile applies edit to the lines of the users file at path and
// writes the result back atomically. The current file must parse: an edit
// is refused rather than risk losing lines we do not understand. The
// edited file must parse too. With create, a missing file counts as empty.
//
// The write goes to a temporary file in the same directory, which is
// fsynced, given mode 0600 (and the old file's owner), renamed over path,
// and the directory is fsynced: a crash leaves either the old or the new
// file, never a mix. Concurrent editors are serialized by a lock on the
// directory. A path that is a symbolic link is followed, and its target
// replaced.
func editUsersFile(path string, create bool, edit func(lines []string, u *Users) ([]string, error)) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	dir := filepath.Dir(path)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer d.Close()
	if err := lockDir(d); err != nil {
		return fmt.Errorf("users file: lock %s: %w", dir, err)
	}

	data, err := os.ReadFile(path)
	var old fs.FileInfo
	switch {
	case err == nil:
		if old, err = os.Stat(path); err != nil {
			return fmt.Errorf("users file: %w", err)
		}
	case create && errors.Is(err, fs.ErrNotExist):
		data = nil
	default:
		return fmt.Errorf("users file: %w", err)
	}
	u, err := ParseUsers(bytes.NewReader(data), path)
	if err != nil {
		return err
	}
	lines := splitLines(data)
	lines, err = edit(lines, u)
	if err != nil {
		return err
	}
	out := []byte(strings.Join(lines, "\n"))
	if len(out) > 0 {
		out = append(out, '\n')
	}
	if _, err := ParseUsers(bytes.NewReader(out), path); err != nil {
		return fmt.Errorf("edited file would not parse: %w", err)
	}
	return writeFileAtomic(path, d, out, old)
}

// splitLines splits data into lines without their LF, dropping the empty
// string after a final LF. CRs are kept, so CRLF files keep their line ends
// on the lines we do not touch.
func splitLines(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	s := strings.TrimSuffix(string(data), "\n")
	return strings.Split(s, "\n")
}

// writeFileAtomic replaces path with data as described at editUsersFile.
// d is the open parent directory; old is the replaced file's info, or nil.
func writeFileAtomic(path string, d *os.File, data []byte, old fs.FileInfo) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(usersFileMode); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if old != nil {
		copyOwner(tmp, old)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("users file: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("users file: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("users file: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if err := d.Sync(); err != nil {
		// The new file is in place; only its durability is uncertain.
		return fmt.Errorf("users file: fsync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
