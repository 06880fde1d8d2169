package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"postoffice/internal/store"
)

// Administration (store.Admin): what the operator's tools (retention
// pruning, "postoffice mailbox", metrics) need to know about mailboxes
// beyond what the protocols use.

// Prune implements store.Admin. It removes the messages of mailbox that policy
// says are too old or too many, oldest first, at most limit of them (limit <=
// 0: no cap). It takes the maildrop lock without waiting (OpenMaildrop), so it
// never removes anything from a mailbox a POP3 session holds: then it returns
// an error wrapping store.ErrLocked and removes nothing. The removal is durable
// when Prune returns (Commit), and is published as a store.EventDeleted like a
// POP3 QUIT.
//
// Age is the time in the id of our files (the delivery time) and the
// modification time of foreign files; now is the reference time.
func (m *Maildir) Prune(mailbox string, policy store.RetentionPolicy, limit int, now time.Time) (store.PruneResult, error) {
	var res store.PruneResult
	if !policy.Enabled() {
		// Nothing to remove; Left still says what the mailbox holds.
		u, err := m.Usage(mailbox)
		res.Left = u.Messages
		return res, err
	}
	d, err := m.OpenMaildrop(mailbox)
	if err != nil {
		return res, err
	}
	defer d.Close()
	md := d.(*maildrop)
	// md.msgs is sorted oldest first.
	n := len(md.msgs)
	// Remove md.msgs[:cut] (oldest first).
	cut, more := policy.Cut(n, func(i int) time.Time { return time.Unix(0, md.msgs[i].order) }, limit, now)
	res.More = more
	idx := make([]int, cut)
	for i := range idx {
		idx[i] = i
		res.Bytes += md.msgs[i].Size
	}
	res.Left = n - cut
	if cut == 0 {
		return res, nil
	}
	if err := md.Commit(idx); err != nil {
		return res, fmt.Errorf("prune %s: %w", mailbox, err)
	}
	res.Removed = cut
	return res, nil
}

// Mailboxes implements store.Admin: the names of the mailboxes under the root:
// the directories whose name is a valid mailbox name, sorted.
func (m *Maildir) Mailboxes() ([]string, error) {
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && store.ValidMailboxName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// HasMailbox implements store.Admin: root/<mailbox> is a directory (or a
// link to one).
func (m *Maildir) HasMailbox(mailbox string) (bool, error) {
	if !store.ValidMailboxName(mailbox) {
		return false, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	fi, err := os.Stat(m.mailboxDir(mailbox))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fi.IsDir(), nil
}

// Usage implements store.Admin. It counts the messages in new/ and cur/ of
// mailbox and adds up their file sizes, without the lock and without reading
// any file: cheap, and exact for our files; a foreign file with LF line ends
// counts its size on disk, not as sent by POP3. A mailbox that does not exist
// is empty.
func (m *Maildir) Usage(mailbox string) (store.Usage, error) {
	var u store.Usage
	if !store.ValidMailboxName(mailbox) {
		return u, fmt.Errorf("usage %q: %w", mailbox, store.ErrBadMailbox)
	}
	for _, sub := range messageSubdirs {
		err := messageFiles(m.mailboxDir(mailbox), sub, func(e fs.DirEntry) error {
			if fi, err := e.Info(); err == nil { // else removed meanwhile
				u.Messages++
				u.Bytes += fi.Size()
			}
			return nil
		})
		if err != nil {
			return u, fmt.Errorf("usage %s: %w", mailbox, err)
		}
	}
	return u, nil
}

// List implements store.Admin: the messages of mailbox, oldest first, as a
// POP3 login would see them (same ids, sizes and order), without taking the
// lock: a listing for operators that does not disturb a POP3 session. Files
// may vanish before the caller reads them. A mailbox that does not exist is
// empty.
func (m *Maildir) List(mailbox string) ([]store.Listed, error) {
	if !store.ValidMailboxName(mailbox) {
		return nil, fmt.Errorf("list %q: %w", mailbox, store.ErrBadMailbox)
	}
	dir := m.mailboxDir(mailbox)
	msgs, err := snapshot(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", mailbox, err)
	}
	out := make([]store.Listed, len(msgs))
	for i, msg := range msgs {
		out[i] = store.Listed{
			MessageInfo: msg.MessageInfo,
			Received:    time.Unix(0, msg.order),
			Open:        func() (io.ReadCloser, error) { return openMessage(dir, msg.sub, msg.name, msg.foreign, msg.Size) },
		}
	}
	return slices.Clip(out), nil
}

// openMessage opens the file dir/sub/name as a message of size octets in
// normal form (see normalize.go; foreign files are normalized as they are
// read). A negative size reads the normal form of the file as it is, with
// no size check. A file that is gone gives store.ErrNotFound.
func openMessage(dir, sub, name string, foreign bool, size int64) (io.ReadCloser, error) {
	f, err := openRaw(filepath.Join(dir, sub, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("message %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var r io.Reader = f
	if foreign {
		// The normal form is never shorter than the file.
		r = newCRLFReader(f, max(size, 0))
	}
	if size < 0 {
		return &messageFile{Reader: r, f: f}, nil
	}
	return &messageFile{Reader: &exactReader{r: r, left: size}, f: f}, nil
}

// CreateMailbox implements store.Admin: root/<mailbox>/{tmp,new,cur}, the
// entries fsynced, as the first delivery would make them.
func (m *Maildir) CreateMailbox(mailbox string) error {
	if !store.ValidMailboxName(mailbox) {
		return fmt.Errorf("mailbox %q: %w", mailbox, store.ErrBadMailbox)
	}
	if err := m.ensureMailbox(mailbox); err != nil {
		return fmt.Errorf("create mailbox %q: %w", mailbox, noSpace(err))
	}
	return nil
}
