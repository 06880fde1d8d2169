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

// Folder management (store.Folders): the folder directories of a mailbox
// and its subscriptions.

// subscriptionsName is Dovecot's subscription file, in root/<mailbox>/.
// Dovecot 2.3 writes "V\t2\n\n" and then one name a line, its components in
// modified UTF-7 separated by a TAB; it reads plain lines (one name in the
// namespace's own spelling) too, and so do we.
const subscriptionsName = "subscriptions"

var _ store.Folders = (*Maildir)(nil)

// ListFolders implements store.Folders. It first creates the missing
// DefaultFolders (subscribed, as Dovecot's auto = subscribe does); when
// they exist that costs a stat each.
func (m *Maildir) ListFolders(mailbox string) ([]store.FolderInfo, error) {
	if !store.ValidMailboxName(mailbox) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	if err := m.ensureMailbox(mailbox); err != nil {
		return nil, fmt.Errorf("list folders: %w", noSpace(err))
	}
	var made []string
	for _, d := range store.DefaultFolders {
		f, _ := parseFolder(d.Name)
		if _, err := os.Stat(m.folderDir(mailbox, f)); errors.Is(err, fs.ErrNotExist) {
			if err := m.makeFolder(mailbox, f); err != nil && !errors.Is(err, store.ErrFolderExists) {
				return nil, fmt.Errorf("list folders: %w", err)
			}
			made = append(made, f.name)
		}
	}
	if len(made) > 0 {
		if err := m.changeSubscriptions(mailbox, func(s []string) []string {
			for _, n := range made {
				if !slices.Contains(s, n) {
					s = append(s, n)
				}
			}
			return s
		}); err != nil {
			return nil, fmt.Errorf("list folders: %w", err)
		}
	}
	subs, err := m.readSubscriptions(mailbox)
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	entries, err := os.ReadDir(m.mailboxDir(mailbox))
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	out := []store.FolderInfo{{Name: store.Inbox, Subscribed: slices.Contains(subs, store.Inbox)}}
	var rest []store.FolderInfo
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		f, ok := folderOfDir(e.Name())
		if !ok {
			continue
		}
		fi := store.FolderInfo{Name: f.name, Subscribed: slices.Contains(subs, f.name)}
		for _, d := range store.DefaultFolders {
			if d.Name == f.name {
				fi.SpecialUse = d.SpecialUse
			}
		}
		rest = append(rest, fi)
	}
	slices.SortFunc(rest, func(a, b store.FolderInfo) int { return strings.Compare(a.Name, b.Name) })
	return append(out, rest...), nil
}

// makeFolder creates the directory of f with tmp/, new/, cur/ and
// maildirfolder, and makes it durable (the folder directory and the
// mailbox directory fsynced). store.ErrFolderExists when it exists.
func (m *Maildir) makeFolder(mailbox string, f folderRef) error {
	dir := m.folderDir(mailbox, f)
	if err := os.Mkdir(dir, dirPerm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return store.ErrFolderExists
		}
		return noSpace(err)
	}
	for _, sub := range []string{subTmp, subNew, subCur} {
		if err := mkdirExisting(filepath.Join(dir, sub)); err != nil {
			return noSpace(err)
		}
	}
	mf, err := os.OpenFile(filepath.Join(dir, maildirfolderName), os.O_WRONLY|os.O_CREATE, filePerm)
	if err != nil {
		return noSpace(err)
	}
	mf.Close()
	if err := m.syncers.get(dir).Sync(); err != nil {
		return err
	}
	return m.syncers.get(m.mailboxDir(mailbox)).Sync()
}

// CreateFolder implements store.Folders: the folder and its missing
// parents (RFC 9051 §6.3.4: a server SHOULD create the superior
// hierarchical names needed), durably.
func (m *Maildir) CreateFolder(mailbox, name string) error {
	f, err := m.checkFolder(mailbox, name)
	if err != nil {
		return err
	}
	if f.inbox() {
		return fmt.Errorf("create %s: %w", name, store.ErrFolderExists)
	}
	if err := m.ensureMailbox(mailbox); err != nil {
		return fmt.Errorf("create %s: %w", name, noSpace(err))
	}
	if err := m.makeParents(mailbox, f); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if err := m.makeFolder(mailbox, f); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	return nil
}

// makeParents creates the missing folders above f.
func (m *Maildir) makeParents(mailbox string, f folderRef) error {
	var chain []folderRef
	for p, ok := f.parent(); ok; p, ok = p.parent() {
		chain = append(chain, p)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := m.makeFolder(mailbox, chain[i]); err != nil && !errors.Is(err, store.ErrFolderExists) {
			return err
		}
	}
	return nil
}

// children returns the directory names of the folders below f.
func (m *Maildir) children(mailbox string, f folderRef) ([]string, error) {
	entries, err := os.ReadDir(m.mailboxDir(mailbox))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), f.rel+".") {
			if _, ok := folderOfDir(e.Name()); ok {
				out = append(out, e.Name())
			}
		}
	}
	return out, nil
}

// DeleteFolder implements store.Folders: the directory is renamed aside
// (to a "..postoffice-deleted-<id>" name no folder can have) and the
// rename fsynced, so the folder is gone at once and for good, then removed
// with its messages and the removal fsynced.
func (m *Maildir) DeleteFolder(mailbox, name string) error {
	f, err := m.checkFolder(mailbox, name)
	if err != nil {
		return err
	}
	if f.inbox() {
		return fmt.Errorf("delete %s: %w", name, store.ErrCannot)
	}
	dir := m.folderDir(mailbox, f)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("delete %s: %w", name, store.ErrNotFound)
	}
	kids, err := m.children(mailbox, f)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if len(kids) > 0 {
		return fmt.Errorf("delete %s: %w", name, store.ErrHasChildren)
	}
	aside := filepath.Join(m.mailboxDir(mailbox), "..postoffice-deleted-"+store.NewID())
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	m.detachFolders(mailbox, f.rel)
	mbDir := m.syncers.get(m.mailboxDir(mailbox))
	if err := mbDir.Sync(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return mbDir.Sync()
}

// RenameFolder implements store.Folders: the directories of the folder
// and of its subfolders are renamed (their uidlists, hence UIDs and
// UIDVALIDITY, go with them), missing parents of the new name created,
// subscriptions renamed, durably. RFC 9051 §6.3.6: renaming INBOX moves
// its messages into the new folder and leaves INBOX empty (store.ErrLocked
// while a POP3 session holds it).
func (m *Maildir) RenameFolder(mailbox, from, to string) error {
	ff, err := m.checkFolder(mailbox, from)
	if err != nil {
		return err
	}
	tf, err := m.checkFolder(mailbox, to)
	if err != nil {
		return err
	}
	if tf.inbox() {
		return fmt.Errorf("rename to %s: %w", to, store.ErrFolderExists)
	}
	if _, err := os.Stat(m.folderDir(mailbox, tf)); err == nil {
		return fmt.Errorf("rename to %s: %w", to, store.ErrFolderExists)
	}
	if ff.inbox() {
		return m.renameInbox(mailbox, tf)
	}
	if tf.rel == ff.rel || strings.HasPrefix(tf.rel, ff.rel+".") {
		return fmt.Errorf("rename %s into itself: %w", from, store.ErrCannot)
	}
	if fi, err := os.Stat(m.folderDir(mailbox, ff)); err != nil || !fi.IsDir() {
		return fmt.Errorf("rename %s: %w", from, store.ErrNotFound)
	}
	if err := m.makeParents(mailbox, tf); err != nil {
		return fmt.Errorf("rename to %s: %w", to, err)
	}
	kids, err := m.children(mailbox, ff)
	if err != nil {
		return fmt.Errorf("rename %s: %w", from, err)
	}
	base := m.mailboxDir(mailbox)
	m.detachFolders(mailbox, ff.rel)
	for _, rel := range append([]string{ff.rel}, kids...) {
		if err := os.Rename(filepath.Join(base, rel), filepath.Join(base, tf.rel+rel[len(ff.rel):])); err != nil {
			return fmt.Errorf("rename %s: %w", from, err)
		}
	}
	if err := m.syncers.get(base).Sync(); err != nil {
		return fmt.Errorf("rename %s: %w", from, err)
	}
	return m.changeSubscriptions(mailbox, func(s []string) []string {
		for i, n := range s {
			if n == ff.name || strings.HasPrefix(n, ff.name+string(store.FolderSep)) {
				s[i] = tf.name + n[len(ff.name):]
			}
		}
		return s
	})
}

// renameInbox creates tf and moves every message of INBOX into it.
func (m *Maildir) renameInbox(mailbox string, tf folderRef) error {
	if err := m.CreateFolder(mailbox, tf.name); err != nil {
		return err
	}
	in, err := m.OpenFolder(mailbox, store.Inbox)
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := in.Sync(); err != nil {
		return err
	}
	if _, err := in.Move(nil, tf.name); err != nil {
		return fmt.Errorf("rename INBOX: %w", err)
	}
	return nil
}

// SetSubscribed implements store.Folders.
func (m *Maildir) SetSubscribed(mailbox, name string, subscribed bool) error {
	f, err := m.checkFolder(mailbox, name)
	if err != nil {
		return err
	}
	if err := m.ensureMailbox(mailbox); err != nil {
		return noSpace(err)
	}
	return m.changeSubscriptions(mailbox, func(s []string) []string {
		s = slices.DeleteFunc(s, func(n string) bool { return n == f.name })
		if subscribed {
			s = append(s, f.name)
		}
		return s
	})
}

// Subscriptions implements store.Folders.
func (m *Maildir) Subscriptions(mailbox string) ([]string, error) {
	if !store.ValidMailboxName(mailbox) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	subs, err := m.readSubscriptions(mailbox)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: %w", err)
	}
	return subs, nil
}

// readSubscriptions returns the subscribed names (IMAP spelling).
func (m *Maildir) readSubscriptions(mailbox string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(m.mailboxDir(mailbox), subscriptionsName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseSubscriptions(string(data)), nil
}

// parseSubscriptions reads a subscriptions file of either format.
func parseSubscriptions(data string) []string {
	lines := strings.Split(data, "\n")
	sep := string(store.FolderSep)
	if len(lines) > 0 && strings.HasPrefix(lines[0], "V\t") {
		lines, sep = lines[1:], "\t"
	}
	var out []string
	for _, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		parts := strings.Split(line, sep)
		for i, p := range parts {
			if d, err := decodeUTF7(p); err == nil {
				parts[i] = d
			}
		}
		name := strings.Join(parts, string(store.FolderSep))
		if f, err := parseFolder(name); err == nil {
			name = f.name
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// subscriptionsBytes writes names in Dovecot 2.3's format.
func subscriptionsBytes(names []string) []byte {
	var b strings.Builder
	b.WriteString("V\t2\n\n")
	for _, n := range names {
		parts := strings.Split(n, string(store.FolderSep))
		for i, p := range parts {
			parts[i] = encodeUTF7(p)
		}
		b.WriteString(strings.Join(parts, "\t") + "\n")
	}
	return []byte(b.String())
}

// changeSubscriptions rewrites the subscriptions with fn under Dovecot's
// dotlock (subscriptions.lock), durably.
func (m *Maildir) changeSubscriptions(mailbox string, fn func([]string) []string) error {
	path := filepath.Join(m.mailboxDir(mailbox), subscriptionsName)
	lk, err := takeDotlock(path)
	if err != nil {
		return err
	}
	cur, err := m.readSubscriptions(mailbox)
	if err != nil {
		lk.release()
		return err
	}
	next := fn(slices.Clone(cur))
	if slices.Equal(next, cur) {
		lk.release()
		return nil
	}
	return lk.replace(m, subscriptionsBytes(next))
}
