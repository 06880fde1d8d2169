package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"postoffice/internal/store"
)

// Maildir flags (https://cr.yp.to/proto/maildir.html, "info"): the file
// name ends in ":2," and the flag letters in ASCII order. Upper-case
// letters are the system flags, lower-case ones keywords, letter 'a'+i
// being line i of dovecot-keywords (Dovecot's mapping).

// systemFlags maps the Maildir letters to IMAP's system flags, in ASCII
// order of the letters.
var systemFlags = []struct {
	letter byte
	flag   string
}{
	{'D', store.FlagDraft},
	{'F', store.FlagFlagged},
	{'R', store.FlagAnswered},
	{'S', store.FlagSeen},
	{'T', store.FlagDeleted},
}

// fileInfo returns the flag letters of a message file name ("" when it
// has no ":2," info).
func fileInfo(name string) string {
	if i := strings.Index(name, ":2,"); i >= 0 {
		return name[i+3:]
	}
	return ""
}

// sortInfo returns the letters of info deduplicated, in ASCII order.
func sortInfo(info []byte) string {
	slices.Sort(info)
	return string(slices.Compact(info))
}

// withLetters returns info with the letters of add added and those of del
// removed.
func withLetters(info, add, del string) string {
	b := make([]byte, 0, len(info)+len(add))
	for i := 0; i < len(info); i++ {
		if strings.IndexByte(del, info[i]) < 0 {
			b = append(b, info[i])
		}
	}
	b = append(b, add...)
	return sortInfo(b)
}

// flagRename is one message file of a renameFlags: where it is, and the
// flag letters it is to carry.
type flagRename struct {
	sub, name string // where the file is believed to be
	info      string // its new flag letters
	// Set by renameFlags: where it is now ("" name: gone).
	newSub, newName string
}

// renameFlags is the one place where flags of message files change (IMAP
// STORE, the web inbox's read mark, POP3's RETR): it renames every file of
// rs within or into dir/cur as base + ":2," + info (the base name, hence
// the message's id and UIDL, never changes, nor does the content), finding
// a file that another program moved by its base name, then fsyncs each
// directory it renamed from or into. The renames are durable when it
// returns nil. A file that is gone is skipped (newName stays "").
func (m *Maildir) renameFlags(dir string, rs []flagRename) error {
	var (
		dirs  = map[string]bool{}
		errs  []error
		index map[string][2]string
	)
	for i := range rs {
		r := &rs[i]
		to := baseName(r.name) + ":2," + r.info
		sub, name := r.sub, r.name
		for attempt := 0; ; attempt++ {
			if sub == subCur && name == to {
				r.newSub, r.newName = sub, name
				break
			}
			err := os.Rename(filepath.Join(dir, sub, name), filepath.Join(dir, subCur, to))
			if err == nil {
				dirs[sub], dirs[subCur] = true, true
				r.newSub, r.newName = subCur, to
				break
			}
			if !errors.Is(err, fs.ErrNotExist) || attempt > 0 {
				if !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("flags of %s: %w", baseName(name), err))
				}
				break
			}
			if index == nil {
				index = locateIndex(dir)
			}
			loc, ok := index[baseName(r.name)]
			if !ok {
				break
			}
			sub, name = loc[0], loc[1]
		}
	}
	for _, sub := range []string{subNew, subCur} {
		if dirs[sub] {
			if err := m.syncers.get(filepath.Join(dir, sub)).Sync(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// locateIndex maps the base names of the message files of dir to where
// they are (subdirectory, file name).
func locateIndex(dir string) map[string][2]string {
	idx := make(map[string][2]string)
	for _, s := range messageSubdirs {
		// A directory that cannot be read has nothing to find.
		_ = messageFiles(dir, s, func(e fs.DirEntry) error {
			idx[baseName(e.Name())] = [2]string{s, e.Name()}
			return nil
		})
	}
	return idx
}
