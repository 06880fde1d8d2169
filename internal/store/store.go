// Package store keeps messages. The Store interface is what the protocol
// backends use; Maildir is its implementation on a local filesystem, one
// standard Maildir (tmp, new, cur) per mailbox, one file per message.
package store

import (
	"context"
	"errors"
	"io"
)

// Sentinel errors callers branch on.
var (
	// ErrLocked: the maildrop is held by another session or process.
	ErrLocked = errors.New("store: maildrop locked")
	// ErrNoSpace: the filesystem is full (ENOSPC or EDQUOT).
	ErrNoSpace = errors.New("store: no space left")
	// ErrBadMailbox: a mailbox name that is not a safe single path element.
	ErrBadMailbox = errors.New("store: invalid mailbox name")
	// ErrNotFound: no such message (or mailbox, where that matters).
	ErrNotFound = errors.New("store: not found")
)

// Store is the storage of every mailbox.
type Store interface {
	// Deliver reads a message from r to EOF and stores one copy in each
	// distinct mailbox of mailboxes. id must come from NewID.
	//
	// Contract: when Deliver returns nil, the message's data and its
	// directory entry in every mailbox are durable (fsynced); the message is
	// then visible to OpenMaildrop. When it returns an error, nothing of the
	// message is visible in any mailbox (no partial file in new/ or cur/). A
	// read error from r (client gone, size limit) aborts the delivery and is
	// returned wrapped. Disk full returns an error wrapping ErrNoSpace.
	// Deliver never holds the whole message in memory.
	Deliver(ctx context.Context, id string, mailboxes []string, r io.Reader) error

	// NewID returns a fresh message id: unique, never reused, sortable by
	// time of assignment, 1-70 characters of 0x21-0x7E without '/' or ':'.
	// It is the file name stem and the POP3 UIDL.
	NewID() string

	// OpenMaildrop takes the exclusive lock of a mailbox (RFC 1939 §8) and
	// snapshots its listing. It returns ErrLocked when another session of
	// this or any other process holds the lock. The mailbox need not exist
	// yet (an empty maildrop).
	OpenMaildrop(mailbox string) (Maildrop, error)
}

// MessageInfo describes one message of a maildrop snapshot.
type MessageInfo struct {
	// ID is the unique id (the POP3 UIDL): 1-70 characters of 0x21-0x7E.
	ID string
	// Size is the exact number of octets Open yields: the message with
	// CRLF line ends, ending in CRLF.
	Size int64
}

// Maildrop is an exclusively locked mailbox snapshot. Its listing does not
// change during its life; mail delivered meanwhile shows at the next open.
type Maildrop interface {
	// Messages returns the snapshot, oldest first. The caller must not
	// modify it.
	Messages() []MessageInfo
	// Open returns the content of message i (index into Messages) with
	// every line ending in CRLF, ending in CRLF, exactly Size octets.
	Open(i int) (io.ReadCloser, error)
	// Commit removes the messages with the given indexes and makes the
	// removal durable (fsync of the directories) before it returns. A
	// message already gone is not an error. On error some messages may be
	// removed and others not, but none is half-removed.
	Commit(indexes []int) error
	// Close releases the lock. It removes nothing.
	Close() error
}
