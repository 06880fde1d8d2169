package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
)

// What the browsing index (internal/store/index) reads and changes the
// Maildir through: index.Source. A message's key is its file name without
// the ":2," info, its location "new/<name>" or "cur/<name>".

var _ index.Source = (*Maildir)(nil)

// racyWindow: a directory modified this recently may change again within
// the same timestamp tick, so its unchanged mtime proves nothing.
const racyWindow = 2 * time.Second

// Stamp implements index.Source: the modification times of new/ and cur/
// (zero when missing), settled when both are older than racyWindow.
func (m *Maildir) Stamp(mailbox string) (stamp string, settled bool, err error) {
	dir, err := m.sourceDir(mailbox)
	if err != nil {
		return "", false, err
	}
	now := time.Now()
	settled = true
	var b strings.Builder
	for _, sub := range []string{subNew, subCur} {
		var t time.Time
		fi, err := os.Stat(filepath.Join(dir, sub))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return "", false, err
		default:
			t = fi.ModTime()
		}
		if now.Sub(t) <= racyWindow {
			settled = false
		}
		b.WriteString(strconv.FormatInt(t.UnixNano(), 10))
		b.WriteByte(' ')
	}
	return b.String(), settled, nil
}

// Scan implements index.Source: the regular files of new/ and cur/ whose
// names do not start with '.'.
func (m *Maildir) Scan(mailbox string) ([]index.Scanned, error) {
	dir, err := m.sourceDir(mailbox)
	if err != nil {
		return nil, err
	}
	var out []index.Scanned
	for _, sub := range messageSubdirs {
		err := messageFiles(dir, sub, func(e fs.DirEntry) error {
			name := e.Name()
			out = append(out, index.Scanned{Key: baseName(name), Loc: sub + "/" + name, Seen: seenFlag(sub, name)})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// splitLoc returns the subdirectory and file name of a location, and
// whether it is one the Maildir made (an index cannot reach outside the
// mailbox with it).
func splitLoc(loc string) (sub, name string, ok bool) {
	sub, name, ok = strings.Cut(loc, "/")
	if !ok || (sub != subNew && sub != subCur) || name == "" || name[0] == '.' || strings.ContainsAny(name, "/\x00") {
		return "", "", false
	}
	return sub, name, true
}

// Describe implements index.Source: what the POP3 snapshot says of the file
// (see OpenMaildrop for ids, sizes and times).
func (m *Maildir) Describe(mailbox, loc string, buf *[]byte) (index.Described, bool, error) {
	sub, name, ok := splitLoc(loc)
	if !ok {
		return index.Described{}, false, nil
	}
	dir, err := m.sourceDir(mailbox)
	if err != nil {
		return index.Described{}, false, err
	}
	lstat := func() (fs.FileInfo, error) { return os.Lstat(dir + "/" + sub + "/" + name) }
	msg, ok, err := scanMessage(dir, sub, name, lstat, buf)
	if err != nil || !ok {
		return index.Described{}, false, err
	}
	return index.Described{ID: msg.ID, Size: msg.Size, Order: msg.order, MTime: msg.mtime}, true, nil
}

// Open implements index.Source.
func (m *Maildir) Open(mailbox, loc string, size int64) (io.ReadCloser, error) {
	sub, name, ok := splitLoc(loc)
	if !ok {
		return nil, fmt.Errorf("message %q: %w", loc, store.ErrNotFound)
	}
	_, ours := ourFileID(name)
	dir, err := m.sourceDir(mailbox)
	if err != nil {
		return nil, err
	}
	return openMessage(dir, sub, name, !ours, size)
}

// Exists implements index.Source.
func (m *Maildir) Exists(mailbox, loc string) (bool, error) {
	sub, name, ok := splitLoc(loc)
	if !ok {
		return false, nil
	}
	dir, err := m.sourceDir(mailbox)
	if err != nil {
		return false, err
	}
	_, err = os.Lstat(filepath.Join(dir, sub, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Remove implements index.Source: under the maildrop lock, it unlinks the
// files and fsyncs the directories it removed from.
func (m *Maildir) Remove(mailbox string, msgs []index.Located) (removed []string, err error) {
	if _, err := m.inboxDir(mailbox); err != nil {
		return nil, err
	}
	lf, err := m.lockMailbox(mailbox)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	dir := m.mailboxDir(mailbox)
	dirs := map[string]bool{}
	var errs []error
	for _, msg := range msgs {
		sub, name, ok := splitLoc(msg.Loc)
		if !ok {
			continue
		}
		err := os.Remove(filepath.Join(dir, sub, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if err == nil {
			dirs[sub] = true
			removed = append(removed, msg.ID)
		}
	}
	for _, sub := range []string{subNew, subCur} {
		if dirs[sub] {
			if err := m.syncers.get(filepath.Join(dir, sub)).Sync(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	m.Publish(store.Event{Kind: store.EventDeleted, Mailbox: mailbox, IDs: removed})
	return removed, errors.Join(errs...)
}

// SetSeen implements index.Source. Marking read moves a file from new/ to
// cur/ with the info suffix ":2,S" (other flags kept, flags in ASCII order
// as the Maildir specification asks); marking unread removes 'S' and
// leaves the file in cur/. It goes through renameFlags, as IMAP's STORE
// and POP3's RETR do. The base name, hence the id and the POP3 UIDL,
// never changes, nor does the content or its size. The rename is made
// durable (both directories fsynced) before SetSeen returns.
func (m *Maildir) SetSeen(mailbox, id, loc string, seen bool) (string, error) {
	sub, name, ok := splitLoc(loc)
	if !ok {
		return "", fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	dir, err := m.inboxDir(mailbox)
	if err != nil {
		return "", err
	}
	info := fileInfo(name)
	if seen {
		info = withLetters(info, "S", "")
	} else {
		info = withLetters(info, "", "S")
	}
	rs := []flagRename{{sub: sub, name: name, info: info}}
	if err := m.renameFlags(dir, rs); err != nil {
		return "", fmt.Errorf("mark %s: %w", id, err)
	}
	if rs[0].newName == "" {
		return "", fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	if rs[0].newSub != sub || rs[0].newName != name {
		m.Publish(store.Event{Kind: store.EventUpdated, Mailbox: mailbox, IDs: []string{id}})
	}
	return rs[0].newSub + "/" + rs[0].newName, nil
}

// sourceDir is the directory of an index.Source box: a mailbox (its
// INBOX) or "mailbox/folder" (index.BoxName), checked as every exported
// method checks names.
func (m *Maildir) sourceDir(box string) (string, error) {
	mailbox, folder, isFolder := strings.Cut(box, "/")
	if !store.ValidMailboxName(mailbox) {
		return "", fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	if !isFolder {
		return m.mailboxDir(mailbox), nil
	}
	f, err := parseFolder(folder)
	if err != nil || f.inbox() {
		return "", fmt.Errorf("folder %q of %q: %w", folder, mailbox, store.ErrBadMailbox)
	}
	return m.folderDir(mailbox, f), nil
}

// inboxDir is sourceDir for the Source methods that change INBOX only
// (the web inbox's delete and mark read).
func (m *Maildir) inboxDir(box string) (string, error) {
	if strings.Contains(box, "/") {
		return "", fmt.Errorf("mailbox %q: %w", box, store.ErrBadMailbox)
	}
	return m.sourceDir(box)
}

// Dir implements index.Source.
func (m *Maildir) Dir(box string) (string, error) { return m.sourceDir(box) }

// IndexDirName is the directory under the root that holds the index
// files: root/.index/<mailbox>/<folder directory>.sqlite, where INBOX's
// folder directory is "INBOX" and a folder's its Maildir++ name (".A.B").
// The index lives outside the mailboxes so that no Maildir reader
// (Dovecot would list a ".index" folder) ever sees it, and removing a
// mailbox with rm -rf cannot race the index's writes; a stale index of a
// mailbox removed and made again is reconciled like any other.
const IndexDirName = ".index"

// IndexFile implements index.Source.
func (m *Maildir) IndexFile(box string) (string, error) {
	dir, err := m.sourceDir(box)
	if err != nil {
		return "", err
	}
	mailbox, _, isFolder := strings.Cut(box, "/")
	name := "INBOX"
	if isFolder {
		name = filepath.Base(dir)
	}
	return filepath.Join(m.root, IndexDirName, mailbox, name+".sqlite"), nil
}

// seenFlag reports whether a message file carries the Maildir "S" (seen)
// flag: it is in cur/ and its info ":2,<flags>" has 'S'.
func seenFlag(sub, name string) bool {
	if sub != subCur {
		return false
	}
	i := strings.Index(name, ":2,")
	return i >= 0 && strings.IndexByte(name[i+3:], 'S') >= 0
}
