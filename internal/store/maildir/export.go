package maildir

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"postoffice/internal/store"
)

// MigrationFile is a message file of a folder as a migration reads it:
// where it is, its base name (the file name without the ":2," info) and
// its info letters.
type MigrationFile struct {
	Path string
	Base string
	Info string
}

// MigrationFolder is what a migration reads of one folder besides its
// messages' state: the keywords in dovecot-keywords order (index i is
// letter 'a'+i) and the message files by id.
type MigrationFolder struct {
	State    *store.FolderState
	Keywords []string
	Files    map[string]MigrationFile
}

// ExportFolder reads folder name of mailbox for a migration: it opens
// the folder (which gives every file a UID in dovecot-uidlist, as any
// reader does), and returns its state and files. The files are read as
// they are on disk (foreign ones with LF line ends included), so that a
// migration keeps their bytes.
func (m *Maildir) ExportFolder(mailbox, name string) (*MigrationFolder, error) {
	f, err := m.OpenFolder(mailbox, name)
	if err != nil {
		return nil, err
	}
	st, err := f.Sync()
	f.Close()
	if err != nil {
		return nil, err
	}
	ref, err := parseFolder(name)
	if err != nil {
		return nil, err
	}
	dir := m.folderDir(mailbox, ref)
	kw, err := readKeywords(filepath.Join(dir, keywordsName))
	if err != nil {
		return nil, err
	}
	out := &MigrationFolder{State: st, Keywords: kw, Files: map[string]MigrationFile{}}
	for _, sub := range messageSubdirs {
		err := messageFiles(dir, sub, func(e fs.DirEntry) error {
			n := e.Name()
			id, ok := ourFileID(n)
			if !ok {
				id = foreignUID(baseName(n))
			}
			out.Files[id] = MigrationFile{Path: filepath.Join(dir, sub, n), Base: baseName(n), Info: fileInfo(n)}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, msg := range st.Messages {
		if _, ok := out.Files[msg.ID]; !ok {
			return nil, fmt.Errorf("maildir: %s/%s: message %s (uid %d) has no file", mailbox, name, msg.ID, msg.UID)
		}
	}
	return out, nil
}

// FileInfoLetters returns the Maildir info letters of system flags and
// keywords, kw being the folder's keywords in dovecot-keywords order; a
// keyword not in kw is an error.
func FileInfoLetters(flags []string, kwOrder []string) (string, error) {
	var b []byte
	for _, f := range flags {
		found := false
		for _, sf := range systemFlags {
			if sf.flag == f {
				b = append(b, sf.letter)
				found = true
			}
		}
		if found {
			continue
		}
		for i, k := range kwOrder {
			if k == f {
				b = append(b, byte('a'+i))
				found = true
			}
		}
		if !found {
			return "", fmt.Errorf("maildir: keyword %q has no letter", f)
		}
	}
	return sortInfo(b), nil
}

// MessageFileName is the file name of a message of id: "<id>.eml" for
// the ids Deliver makes, id itself for a foreign file's.
func MessageFileName(id string) string {
	if len(id) == store.IDLen && store.IsNewID(id) {
		return id + msgExt
	}
	return id
}

// readUIDListFile reads dir's dovecot-uidlist (nil when missing).
func readUIDListFile(dir string) (*uidlist, error) {
	data, err := os.ReadFile(filepath.Join(dir, uidlistName))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseUIDList(data)
}
