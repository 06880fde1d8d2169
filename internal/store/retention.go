package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Retention and inspection: what the operator's tools (retention pruning,
// "postoffice mailbox", metrics) need to know about mailboxes beyond what the
// protocols use.

// RetentionPolicy says which messages of a mailbox Prune removes. A zero
// field is no limit; the zero policy removes nothing.
type RetentionPolicy struct {
	// MaxAge removes messages received longer ago than this.
	MaxAge time.Duration
	// MaxMessages keeps at most this many messages, removing the oldest.
	MaxMessages int
}

// Enabled reports whether p removes anything at all.
func (p RetentionPolicy) Enabled() bool { return p.MaxAge > 0 || p.MaxMessages > 0 }

// PruneResult is what one Prune call did.
type PruneResult struct {
	Removed int   // messages removed
	Bytes   int64 // their size
	Left    int   // messages left in the mailbox
	More    bool  // the policy wants more removed than limit allowed
}

// Prune removes the messages of mailbox that policy says are too old or too
// many, oldest first, at most limit of them (limit <= 0: no cap). It takes
// the maildrop lock without waiting (OpenMaildrop), so it never removes
// anything from a mailbox a POP3 session holds: then it returns an error
// wrapping ErrLocked and removes nothing. The removal is durable when Prune
// returns (Commit), and is published as an EventDeleted like a POP3 QUIT.
//
// Age is the time in the id of our files (the delivery time) and the
// modification time of foreign files; now is the reference time.
func (m *Maildir) Prune(mailbox string, policy RetentionPolicy, limit int, now time.Time) (PruneResult, error) {
	var res PruneResult
	if !policy.Enabled() {
		return res, nil
	}
	d, err := m.OpenMaildrop(mailbox)
	if err != nil {
		return res, err
	}
	defer d.Close()
	md := d.(*maildrop)
	// md.msgs is sorted oldest first.
	n := len(md.msgs)
	cut := 0 // remove md.msgs[:cut]
	if policy.MaxMessages > 0 && n > policy.MaxMessages {
		cut = n - policy.MaxMessages
	}
	if policy.MaxAge > 0 {
		old := now.Add(-policy.MaxAge).UnixNano()
		for cut < n && md.msgs[cut].order < old {
			cut++
		}
	}
	if limit > 0 && cut > limit {
		cut, res.More = limit, true
	}
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

// Mailboxes returns the names of the mailboxes under the root: the
// directories whose name is a valid mailbox name, sorted.
func (m *Maildir) Mailboxes() ([]string, error) {
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && ValidMailboxName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Usage is the message count and size of a mailbox.
type Usage struct {
	Messages int
	Bytes    int64
}

// Usage counts the messages in new/ and cur/ of mailbox and adds up their
// file sizes, without the lock and without reading any file: cheap, and exact
// for our files; a foreign file with LF line ends counts its size on disk,
// not as sent by POP3. A mailbox that does not exist is empty.
func (m *Maildir) Usage(mailbox string) (Usage, error) {
	var u Usage
	if !ValidMailboxName(mailbox) {
		return u, fmt.Errorf("usage %q: %w", mailbox, ErrBadMailbox)
	}
	for _, sub := range []string{subNew, subCur} {
		dir := filepath.Join(m.mailboxDir(mailbox), sub)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return u, fmt.Errorf("usage %s: %w", mailbox, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			u.Messages++
			u.Bytes += fi.Size()
		}
	}
	return u, nil
}

// Listed is one message of a List: its id and size as POP3 shows them, when
// it was received, and the path of its file.
type Listed struct {
	MessageInfo
	Received time.Time
	Path     string
}

// List returns the messages of mailbox, oldest first, as a POP3 login would
// see them (same ids, sizes and order), without taking the lock: a listing
// for operators that does not disturb a POP3 session. Files may vanish
// before the caller reads them. A mailbox that does not exist is empty.
func (m *Maildir) List(mailbox string) ([]Listed, error) {
	if !ValidMailboxName(mailbox) {
		return nil, fmt.Errorf("list %q: %w", mailbox, ErrBadMailbox)
	}
	dir := m.mailboxDir(mailbox)
	msgs, err := snapshot(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", mailbox, err)
	}
	out := make([]Listed, len(msgs))
	for i, msg := range msgs {
		out[i] = Listed{
			MessageInfo: msg.MessageInfo,
			Received:    time.Unix(0, msg.order),
			Path:        filepath.Join(dir, msg.sub, msg.name),
		}
	}
	return slices.Clip(out), nil
}
