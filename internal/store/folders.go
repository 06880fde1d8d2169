package store

import (
	"errors"
	"io"
	"time"
)

// Errors of the folder interfaces, besides ErrNotFound (no such folder or
// message), ErrLocked and ErrNoSpace.
var (
	// ErrFolderExists: CREATE or RENAME onto a folder that exists.
	ErrFolderExists = errors.New("store: folder exists")
	// ErrBadFolder: a folder name the store cannot hold (empty component,
	// a '.', control characters, too long, a child of INBOX).
	ErrBadFolder = errors.New("store: invalid folder name")
	// ErrHasChildren: DELETE of a folder with subfolders.
	ErrHasChildren = errors.New("store: folder has subfolders")
	// ErrTooManyKeywords: the folder cannot hold another keyword.
	ErrTooManyKeywords = errors.New("store: too many keywords")
	// ErrCannot: the operation is not possible on this folder (DELETE
	// INBOX).
	ErrCannot = errors.New("store: not possible on this folder")
)

// Inbox is the name of the folder SMTP delivers to and POP3 serves. Folder
// names are compared to it case-insensitively (RFC 9051 §5.1).
const Inbox = "INBOX"

// FolderSep is the hierarchy separator of folder names as IMAP shows them.
const FolderSep = '/'

// System flags as IMAP spells them (RFC 9051 §2.3.2). \Recent is not a
// stored flag.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Folders is a user's IMAP view of the store: the mailbox's folders (INBOX
// plus user folders), each with its messages, UIDs and flags. Folder names
// are UTF-8 with FolderSep between levels; INBOX is any case of "INBOX".
type Folders interface {
	// ListFolders returns every folder of mailbox, INBOX first, then by
	// name. It first creates the default folders that are missing
	// (DefaultFolders), so a first login finds them.
	ListFolders(mailbox string) ([]FolderInfo, error)
	// CreateFolder creates a folder and any missing parents (RFC 9051
	// §6.3.4), durably. ErrFolderExists when it exists, ErrBadFolder for a
	// name the store cannot hold.
	CreateFolder(mailbox, name string) error
	// DeleteFolder removes a folder and its messages, durably.
	// ErrHasChildren when it has subfolders, ErrCannot for INBOX,
	// ErrNotFound when it does not exist.
	DeleteFolder(mailbox, name string) error
	// RenameFolder renames a folder with its subfolders, keeping UIDs and
	// UIDVALIDITY. Renaming INBOX moves its messages into a new folder and
	// leaves INBOX empty (RFC 9051 §6.3.6).
	RenameFolder(mailbox, from, to string) error
	// SetSubscribed adds or removes a folder name from the subscriptions
	// (RFC 9051 §6.3.7); the folder need not exist.
	SetSubscribed(mailbox, name string, subscribed bool) error
	// Subscriptions returns the subscribed names, folders or not (LIST
	// (SUBSCRIBED) shows those that are not as \NonExistent, RFC 5258
	// §3.1).
	Subscriptions(mailbox string) ([]string, error)
	// OpenFolder opens a folder for reading and changing. ErrNotFound
	// when it does not exist (INBOX always exists). The Folder is safe
	// for use by one goroutine; several Folders may be open on the same
	// folder, in this and in other processes.
	OpenFolder(mailbox, name string) (Folder, error)
}

// FolderInfo describes one folder of a ListFolders.
type FolderInfo struct {
	Name string // as IMAP shows it: UTF-8, FolderSep between levels
	// SpecialUse is the RFC 6154 attribute (`\Sent`, `\Drafts`, `\Trash`,
	// `\Archive`, `\Junk`) or "".
	SpecialUse string
	Subscribed bool
}

// DefaultFolders are the folders ListFolders creates, with their RFC 6154
// special-use attributes.
var DefaultFolders = []FolderInfo{
	{Name: "Archive", SpecialUse: `\Archive`},
	{Name: "Drafts", SpecialUse: `\Drafts`},
	{Name: "Junk", SpecialUse: `\Junk`},
	{Name: "Sent", SpecialUse: `\Sent`},
	{Name: "Trash", SpecialUse: `\Trash`},
}

// Folder is one open folder. UIDs are assigned by Sync, durably, before any
// caller can see them; a UID is never reused within a UIDVALIDITY.
type Folder interface {
	// Sync brings the folder's listing up to date: messages that arrived
	// (by SMTP, APPEND, COPY, MOVE, or another program writing the
	// Maildir) get UIDs, messages removed are gone, flags are re-read. A
	// Sync when nothing changed is cheap (no directory is read). New UIDs
	// are durable (uidlist written, fsynced and renamed into place) when
	// Sync returns. The state it returns is shared and immutable: no one
	// modifies it afterwards, the caller included, and Sync returns the
	// same pointer while nothing has changed (so that a caller can skip
	// comparing, and 100 sessions on one folder hold one copy).
	Sync() (*FolderState, error)
	// Open returns the content of the message with uid as IMAP sends it
	// (CRLF line ends), exactly Size octets. ErrNotFound when it is gone.
	Open(uid uint32) (io.ReadCloser, error)
	// SetFlags changes the flags of the messages with the given UIDs:
	// op FlagsAdd, FlagsRemove or FlagsSet. Messages gone are skipped.
	// The renames are durable when it returns. It returns the messages it
	// found, with their new flags and modseqs (changed or not).
	// ErrTooManyKeywords when a new keyword cannot be stored.
	SetFlags(uids []uint32, op FlagOp, flags []string) ([]FolderMessage, error)
	// Expunge removes the messages with the given UIDs that carry
	// \Deleted (all of them, when uids is nil), durably (directories
	// fsynced), and returns the UIDs it removed, ascending. ErrLocked
	// (nothing removed) when the folder is INBOX and a POP3 session holds
	// its maildrop.
	Expunge(uids []uint32) ([]uint32, error)
	// Copy copies the messages with the given UIDs into folder dest of
	// the same mailbox, flags kept, durably, and returns the destination's
	// UIDVALIDITY and the UID pairs (source ascending).
	Copy(uids []uint32, dest string) (*CopyResult, error)
	// Move is Copy then the removal of the sources (RFC 6851), durable
	// before it returns; a message keeps its id (the file base name).
	// ErrLocked as Expunge.
	Move(uids []uint32, dest string) (*CopyResult, error)
	// Append stores a new message from r (to EOF) with flags and
	// internal date (zero: now), as durably as a delivery, and returns
	// its UID. r yields at most the caller's size limit. Line ends are
	// stored as CRLF.
	Append(r io.Reader, flags []string, date time.Time) (uint32, error)
	// Changed returns a channel that receives (without blocking the
	// sender) when the folder may have changed: a change in this process,
	// or one by another program seen by a cheap check at most a second
	// old. The receiver then calls Sync.
	Changed() <-chan struct{}
	// Close releases the folder.
	Close() error
}

// FlagOp says what SetFlags does with its flags.
type FlagOp int

// The flag operations of STORE (RFC 9051 §6.4.6).
const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// FolderState is a folder's listing at one moment.
type FolderState struct {
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	// Messages, by UID ascending.
	Messages []FolderMessage
	// Keywords are the keywords the folder has defined (the FLAGS and
	// PERMANENTFLAGS of SELECT), and KeywordsFull reports that no more can
	// be defined.
	Keywords     []string
	KeywordsFull bool
}

// FolderMessage is one message of a FolderState.
type FolderMessage struct {
	UID uint32
	// ID is the message's id: the file base name's stem, the POP3 UIDL
	// (in INBOX) and the web id; it does not change with flags or folder.
	ID string
	// Flags in canonical order: system flags, then keywords.
	Flags []string
	// Size is the wire size (RFC822.SIZE): the octets Open yields.
	Size int64
	// Received is the internal date (RFC 9051 §2.3.3).
	Received time.Time
	// ModSeq grows with every change of the message (RFC 7162), kept so
	// that CONDSTORE can be added without a migration.
	ModSeq uint64
}

// CopyResult is what Copy and Move did (the COPYUID response code of
// RFC 4315).
type CopyResult struct {
	UIDValidity uint32   // of the destination
	Source      []uint32 // UIDs copied, ascending
	Dest        []uint32 // their new UIDs, in the same order
}
