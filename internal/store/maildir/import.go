package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"postoffice/internal/store"
)

// ImportMessage is a message a migration writes into a folder.
type ImportMessage struct {
	ID       string
	UID      uint32
	Info     string // Maildir info letters (FileInfoLetters)
	Received time.Time
	// Open returns the message's bytes as they are to be stored.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// ImportFolder writes msgs into folder name of mailbox (created if
// missing) keeping their ids, UIDs, flags and received times, and sets
// the folder's UIDVALIDITY, UIDNEXT (at least past every UID) and
// keywords (in dovecot-keywords order). A message whose id or UID the
// folder already has is skipped, so an interrupted migration can be run again.
// It returns how many messages it wrote. Every file is fsynced before
// dovecot-uidlist names it; the server must not run on the mailbox.
func (m *Maildir) ImportFolder(ctx context.Context, mailbox, name string, validity, next uint32, keywords []string, msgs []ImportMessage) (int, error) {
	ref, err := parseFolder(name)
	if err != nil {
		return 0, err
	}
	if ref.inbox() {
		if err := m.ensureMailbox(mailbox); err != nil {
			return 0, err
		}
	} else if err := m.CreateFolder(mailbox, name); err != nil && !errors.Is(err, store.ErrFolderExists) {
		return 0, err
	}
	dir := m.folderDir(mailbox, ref)
	for _, sub := range []string{subTmp, subNew, subCur} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return 0, err
		}
	}
	have := map[string]bool{}
	for _, sub := range messageSubdirs {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			n := e.Name()
			id, ok := ourFileID(n)
			if !ok {
				id = foreignUID(baseName(n))
			}
			have[id] = true
		}
	}
	l, err := readUIDListFile(dir)
	if err != nil {
		return 0, err
	}
	if l == nil {
		l = newUIDList(validity)
	}
	if l.validity != validity && len(l.recs) > 0 {
		return 0, fmt.Errorf("maildir: %s/%s already holds messages under UIDVALIDITY %d, not %d", mailbox, name, l.validity, validity)
	}
	l.validity = validity
	wrote := 0
	for _, msg := range msgs {
		if err := ctx.Err(); err != nil {
			return wrote, err
		}
		if have[msg.ID] || slices.ContainsFunc(l.recs, func(r uidRec) bool { return r.uid == msg.UID }) {
			continue
		}
		base := MessageFileName(msg.ID)
		if !validID(msg.ID) {
			return wrote, fmt.Errorf("maildir: message id %q cannot be a file name", msg.ID)
		}
		if err := m.writeImported(ctx, dir, base, msg); err != nil {
			return wrote, err
		}
		if i := slices.IndexFunc(l.recs, func(r uidRec) bool { return r.uid == msg.UID }); i >= 0 {
			l.recs[i] = uidRec{uid: msg.UID, base: base}
		} else {
			l.recs = append(l.recs, uidRec{uid: msg.UID, base: base})
		}
		have[msg.ID] = true
		wrote++
	}
	slices.SortFunc(l.recs, func(a, b uidRec) int { return int(int64(a.uid) - int64(b.uid)) })
	l.next = max(l.next, next)
	if n := len(l.recs); n > 0 {
		l.next = max(l.next, l.recs[n-1].uid+1)
	}
	if err := writeSynced(filepath.Join(dir, uidlistName), l.bytes()); err != nil {
		return wrote, err
	}
	if len(keywords) > 0 {
		if err := writeSynced(filepath.Join(dir, keywordsName), keywordsBytes(keywords)); err != nil {
			return wrote, err
		}
	}
	return wrote, syncDir(dir)
}

// writeImported writes msg as dir/tmp/base, fsyncs it and renames it
// into new/ (no info) or cur/ (with ":2,"+info).
func (m *Maildir) writeImported(ctx context.Context, dir, base string, msg ImportMessage) error {
	rc, err := msg.Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp := filepath.Join(dir, subTmp, base)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !msg.Received.IsZero() {
		err = os.Chtimes(tmp, msg.Received, msg.Received)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	sub, name := subNew, base
	if msg.Info != "" {
		sub, name = subCur, base+":2,"+msg.Info
	}
	if err := os.Rename(tmp, filepath.Join(dir, sub, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Join(dir, sub))
}

func writeSynced(path string, data []byte) error {
	tmp := path + ".migrate-tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// WriteSubscriptions replaces mailbox's subscription list with names.
func (m *Maildir) WriteSubscriptions(mailbox string, names []string) error {
	return m.changeSubscriptions(mailbox, func([]string) []string { return names })
}
