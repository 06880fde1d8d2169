package maildir

import (
	"path/filepath"
	"strings"
	"unicode/utf8"

	"postoffice/internal/store"
)

// Folder names on disk: Maildir++ (Dovecot's LAYOUT=maildir++). INBOX is
// the mailbox directory itself; folder "A/B" is the directory ".A.B" in it,
// each component in IMAP's modified UTF-7 (utf7.go), as Dovecot names them,
// with an empty file "maildirfolder" (the Maildir++ mark, which Dovecot
// writes too).

// maildirfolderName marks a Maildir++ folder directory.
const maildirfolderName = "maildirfolder"

// maxFolderDir bounds the directory name of a folder: the filesystem's
// 255 with room for the prefix DeleteFolder renames it to.
const maxFolderDir = 200

// folderRef is a checked folder name: its canonical spelling (store.Inbox
// for any case of INBOX) and its directory name in the mailbox ("" for
// INBOX).
type folderRef struct {
	name string
	rel  string
}

func (f folderRef) inbox() bool { return f.rel == "" }

// parseFolder checks a folder name as IMAP spells it (UTF-8, FolderSep
// between levels) and maps it to its directory. It refuses, with
// store.ErrBadFolder: invalid UTF-8, empty components (a leading,
// trailing or doubled separator), a '.' in a component (Maildir++'s
// separator on disk), control characters, a directory name longer than
// maxFolderDir, and children of INBOX (INBOX is the mailbox directory,
// which cannot hold a folder named below it in Maildir++).
func parseFolder(name string) (folderRef, error) {
	if strings.EqualFold(name, store.Inbox) {
		return folderRef{name: store.Inbox}, nil
	}
	if name == "" || !utf8.ValidString(name) {
		return folderRef{}, store.ErrBadFolder
	}
	parts := strings.Split(name, string(store.FolderSep))
	if strings.EqualFold(parts[0], store.Inbox) {
		return folderRef{}, store.ErrBadFolder
	}
	var rel strings.Builder
	for _, p := range parts {
		if p == "" || strings.ContainsRune(p, '.') {
			return folderRef{}, store.ErrBadFolder
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return folderRef{}, store.ErrBadFolder
			}
		}
		rel.WriteByte('.')
		rel.WriteString(encodeUTF7(p))
	}
	if rel.Len() > maxFolderDir {
		return folderRef{}, store.ErrBadFolder
	}
	return folderRef{name: name, rel: rel.String()}, nil
}

// folderOfDir returns the folder whose directory is named rel (".A.B"),
// and false when rel is no folder's name.
func folderOfDir(rel string) (folderRef, bool) {
	if len(rel) < 2 || rel[0] != '.' {
		return folderRef{}, false
	}
	var parts []string
	for _, p := range strings.Split(rel[1:], ".") {
		d, err := decodeUTF7(p)
		if err != nil {
			return folderRef{}, false
		}
		parts = append(parts, d)
	}
	f, err := parseFolder(strings.Join(parts, string(store.FolderSep)))
	if err != nil || f.inbox() || f.rel != rel {
		return folderRef{}, false
	}
	return f, true
}

// folderDir returns the directory of folder f of mailbox.
func (m *Maildir) folderDir(mailbox string, f folderRef) string {
	if f.inbox() {
		return m.mailboxDir(mailbox)
	}
	return filepath.Join(m.mailboxDir(mailbox), f.rel)
}

// parent returns the folder above f, and false at the top level.
func (f folderRef) parent() (folderRef, bool) {
	i := strings.LastIndexByte(f.name, store.FolderSep)
	if i < 0 || f.inbox() {
		return folderRef{}, false
	}
	p, err := parseFolder(f.name[:i])
	return p, err == nil
}
