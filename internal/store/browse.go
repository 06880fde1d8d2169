package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// This file holds what a mail browser (the web inbox) does to single
// messages: read one, delete some, mark read or unread. Messages are found
// through the Index by id (the POP3 UIDL), never by a path built from the
// request, so an id cannot reach outside its mailbox.

// ValidID reports whether id can name a message in a request: 1-70
// characters of 0x21-0x7E (RFC 1939 §7, the UIDL alphabet) without '/' or
// '\', not starting with '.'.
func ValidID(id string) bool {
	if len(id) < 1 || len(id) > 70 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e || c == '/' || c == '\\' {
			return false
		}
	}
	return true
}

// locate returns the current file of message id; b.mu is held. When the
// indexed file has been moved (a mail reader renamed it), the index is
// reconciled once and the lookup retried.
func (x *Index) locate(b *boxIndex, id string) (*entry, error) {
	for try := 0; ; try++ {
		en, ok := b.byID[id]
		if ok {
			if _, err := os.Lstat(filepath.Join(b.dir, en.sub, en.name)); err == nil {
				return en, nil
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		if try > 0 {
			return nil, fmt.Errorf("message %s: %w", id, ErrNotFound)
		}
		if err := x.reconcile(b, false); err != nil {
			return nil, err
		}
		if !ok {
			// The index was current; the id is unknown.
			if _, ok := b.byID[id]; !ok {
				return nil, fmt.Errorf("message %s: %w", id, ErrNotFound)
			}
		}
	}
}

// Open returns the content of message id of mailbox as POP3 RETR sends it
// (CRLF line ends, exactly Summary.Size octets) and its summary.
func (x *Index) Open(mailbox, id string) (io.ReadCloser, Summary, error) {
	if !ValidID(id) {
		return nil, Summary{}, fmt.Errorf("message %q: %w", id, ErrNotFound)
	}
	b, err := x.box(mailbox)
	if err != nil {
		return nil, Summary{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	en, err := x.locate(b, id)
	if err != nil {
		return nil, Summary{}, err
	}
	f, err := os.Open(filepath.Join(b.dir, en.sub, en.name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Summary{}, fmt.Errorf("message %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, Summary{}, err
	}
	var r io.Reader = f
	if en.foreign {
		r = newCRLFReader(f, en.Size)
	}
	return &messageFile{Reader: &exactReader{r: r, left: en.Size}, f: f}, en.Summary, nil
}

// lockMailbox takes the maildrop lock of mailbox without waiting: it
// returns ErrLocked while a POP3 session (of any process) holds it. The
// caller closes the file to release it.
func (m *Maildir) lockMailbox(mailbox string) (*os.File, error) {
	if err := m.ensureMailbox(mailbox); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(m.mailboxDir(mailbox), lockName), os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, err
	}
	if err := tryLock(lf); err != nil {
		lf.Close()
		return nil, err
	}
	return lf, nil
}

// Delete removes the messages ids of mailbox and returns the ids it
// removed (ids not found are skipped). It takes the maildrop lock for the
// duration of the call only, and fails with ErrLocked, removing nothing,
// while a POP3 session holds it: a message must not vanish from under a
// session's snapshot (RFC 1939 §8 exclusive access). The removals are
// durable (directories fsynced) when it returns; an EventDeleted is
// published.
func (x *Index) Delete(mailbox string, ids []string) (deleted []string, err error) {
	b, err := x.box(mailbox)
	if err != nil {
		return nil, err
	}
	lf, err := x.m.lockMailbox(mailbox)
	if err != nil {
		return nil, fmt.Errorf("delete in %s: %w", mailbox, err)
	}
	defer lf.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	dirs := map[string]bool{}
	var errs []error
	for _, id := range ids {
		if !ValidID(id) || slices.Contains(deleted, id) {
			continue
		}
		en, err := x.locate(b, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = os.Remove(filepath.Join(b.dir, en.sub, en.name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if err == nil {
			dirs[en.sub] = true
			deleted = append(deleted, id)
		}
		x.forgetEntry(b, en)
	}
	for _, sub := range []string{subNew, subCur} {
		if dirs[sub] {
			if err := x.m.syncers.get(filepath.Join(b.dir, sub)).Sync(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	x.m.Publish(Event{Kind: EventDeleted, Mailbox: mailbox, IDs: deleted})
	if err := errors.Join(errs...); err != nil {
		return deleted, fmt.Errorf("delete in %s: %w", mailbox, err)
	}
	return deleted, nil
}

// forgetEntry drops en from b; b.mu is held.
func (x *Index) forgetEntry(b *boxIndex, en *entry) {
	delete(b.byBase, baseName(en.name))
	delete(b.byID, en.ID)
	if i := slices.Index(b.sorted, en); i >= 0 {
		b.sorted = slices.Delete(b.sorted, i, i+1)
	}
	b.size -= en.Size
	if !en.Seen {
		b.unseen--
	}
}

// SetSeen sets or clears the Maildir "S" (seen) flag of message id and
// returns its new summary. Marking read moves a file from new/ to cur/ with
// the info suffix ":2,S" (other flags kept, flags in ASCII order as the
// Maildir specification asks); marking unread removes 'S' and leaves the
// file in cur/. The base name, hence the id and the POP3 UIDL, never
// changes, nor does the content or its size. No lock is taken: POP3
// sessions find a renamed file by its base name. The rename is made
// durable (both directories fsynced) before SetSeen returns, and an
// EventUpdated is published when something changed.
func (x *Index) SetSeen(mailbox, id string, seen bool) (Summary, error) {
	if !ValidID(id) {
		return Summary{}, fmt.Errorf("message %q: %w", id, ErrNotFound)
	}
	b, err := x.box(mailbox)
	if err != nil {
		return Summary{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	en, err := x.locate(b, id)
	if err != nil {
		return Summary{}, err
	}
	base := baseName(en.name)
	flags := ""
	if i := strings.Index(en.name, ":2,"); i >= 0 {
		flags = en.name[i+3:]
	}
	fl := []byte(strings.ReplaceAll(flags, "S", ""))
	if seen {
		fl = append(fl, 'S')
		slices.Sort(fl)
	}
	name := base + ":2," + string(fl)
	if en.sub == subCur && name == en.name {
		return en.Summary, nil
	}
	from := filepath.Join(b.dir, en.sub, en.name)
	to := filepath.Join(b.dir, subCur, name)
	if err := os.Rename(from, to); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Summary{}, fmt.Errorf("message %s: %w", id, ErrNotFound)
		}
		return Summary{}, fmt.Errorf("mark %s: %w", id, err)
	}
	for _, sub := range []string{en.sub, subCur} {
		if err := x.m.syncers.get(filepath.Join(b.dir, sub)).Sync(); err != nil {
			return Summary{}, fmt.Errorf("mark %s: %w", id, err)
		}
		if en.sub == subCur {
			break
		}
	}
	if en.Seen != seen {
		if seen {
			b.unseen--
		} else {
			b.unseen++
		}
	}
	en.sub, en.name, en.Seen = subCur, name, seen
	x.m.Publish(Event{Kind: EventUpdated, Mailbox: mailbox, IDs: []string{id}})
	return en.Summary, nil
}
