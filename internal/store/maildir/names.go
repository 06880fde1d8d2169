package maildir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"strings"
)

// validID reports whether id can be a message file name stem: 1-70
// characters of 0x21-0x7E (the POP3 unique-id alphabet, RFC 1939 §7) without
// '/', ':' (the Maildir info separator) and not starting with '.'.
func validID(id string) bool {
	if len(id) < 1 || len(id) > 70 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x21 || c > 0x7e || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

// ourFileID returns the id of a message file written by Deliver, whose name
// is "<id>.eml" optionally followed by a Maildir info suffix ":2,<flags>"
// added by a mail reader, and whether name has that form.
func ourFileID(name string) (string, bool) {
	if len(name) < store.IDLen+len(msgExt) {
		return "", false
	}
	id, rest := name[:store.IDLen], name[store.IDLen:]
	if !store.IsNewID(id) || rest[:len(msgExt)] != msgExt {
		return "", false
	}
	rest = rest[len(msgExt):]
	if rest != "" && (len(rest) < 3 || rest[:3] != ":2,") {
		return "", false
	}
	return id, true
}

// ourTmpName reports whether name is that of one of our tmp files:
// "<id>.tmp", or "<id>.eml" as versions before tmpExt named them.
func ourTmpName(name string) bool {
	stem, ok := strings.CutSuffix(name, tmpExt)
	if !ok {
		stem, ok = strings.CutSuffix(name, msgExt)
	}
	return ok && len(stem) == store.IDLen && store.IsNewID(stem)
}

// messageSubdirs are the subdirectories of a mailbox that hold messages,
// in the order they are read.
var messageSubdirs = [...]string{subNew, subCur}

// messageFiles calls fn with every message file of dir/sub: the regular
// files whose names do not start with '.'. A missing directory has none.
// An error of fn ends the walk and is returned.
func messageFiles(dir, sub string, fn func(e fs.DirEntry) error) error {
	entries, err := os.ReadDir(filepath.Join(dir, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// baseName returns a message file name without its Maildir info suffix.
func baseName(name string) string {
	if i := strings.Index(name, ":2,"); i >= 0 {
		return name[:i]
	}
	return name
}

// foreignUID returns the UID of a foreign message file with base name base.
func foreignUID(base string) string {
	ok := len(base) >= 1 && len(base) <= 70
	for i := 0; ok && i < len(base); i++ {
		ok = base[i] >= 0x21 && base[i] <= 0x7e
	}
	if ok {
		return base
	}
	sum := sha256.Sum256([]byte(base))
	return hex.EncodeToString(sum[:20])
}
