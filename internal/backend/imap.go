package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"postoffice/internal/auth"
	imapsrv "postoffice/internal/imap"
	"postoffice/internal/store"
)

// This file is the IMAP backend: logins through the Authenticator, then
// the user's folders from the store (store.Folders). imapview.go holds the
// selected folder, imapfetch.go FETCH and the commands that change
// messages, imapsearch.go SEARCH.

// IMAPCounter counts what the IMAP backend sees (the metrics).
type IMAPCounter interface {
	// IMAPLogin counts a login by result: ok, failed, blocked, error.
	IMAPLogin(result string)
	// StoreError counts a failed store operation.
	StoreError(op string)
}

// IMAP implements imap.Backend on a store.
type IMAP struct {
	Auth    Authenticator
	Folders store.Folders
	Counter IMAPCounter
	// AppendLimit is the largest message APPEND takes (APPENDLIMIT, RFC
	// 7889): --max-message-size.
	AppendLimit int64
	// Searcher, when set, answers SEARCH's TEXT, BODY, SUBJECT, FROM and
	// TO from a full-text index (word-prefix matching, case- and
	// accent-insensitive); without it they are substring matches over the
	// messages read one by one.
	Searcher TextSearcher
	// FetchIndex, when set, gives the ENVELOPE and BODYSTRUCTURE of
	// indexed messages, so that FETCH of them reads no file.
	FetchIndex FetchIndex

	envelopes envelopeCache
}

// TextSearcher is a full-text index of the folders (the store's index).
type TextSearcher interface {
	// SearchIDs returns the ids of the messages of a folder matching every
	// condition of q.
	SearchIDs(mailbox, folder string, q store.Query) (map[string]bool, error)
}

var _ imapsrv.Backend = (*IMAP)(nil)

// NewSession implements imap.Backend.
func (b *IMAP) NewSession(c *imapsrv.ConnInfo) (imapsrv.Session, error) {
	return &imapSession{b: b, c: c}, nil
}

// imapSession is one IMAP connection's state above the engine.
type imapSession struct {
	b       *IMAP
	c       *imapsrv.ConnInfo
	mailbox string // the logged-in user's mailbox; "" before login
	sel     *view  // the selected folder; nil when none
}

var _ imapsrv.Session = (*imapSession)(nil)

// Close implements imapserver.Session.
func (s *imapSession) Close() error {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	return nil
}

// Login implements imapserver.Session: the users file's credentials, the
// shared failed-login delay and per-IP cap; the mailbox is the user's
// canonical name, as for POP3.
func (s *imapSession) Login(username, password string) error {
	if s.mailbox != "" {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Already logged in"}
	}
	switch err := s.b.Auth.Check(context.Background(), s.c.RemoteIP, username, password); {
	case errors.Is(err, ErrBlocked):
		s.b.Counter.IMAPLogin("blocked")
		go s.c.Conn.Bye("Too many failed logins from your address, try later")
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: "Too many failed logins from your address, try later"}
	case errors.Is(err, ErrBadCredentials):
		s.b.Counter.IMAPLogin("failed")
		s.c.Logger.Info("login failed", "user", username)
		return imapserver.ErrAuthFailed
	case err != nil:
		s.b.Counter.IMAPLogin("error")
		return s.storeErr("login", err)
	}
	mailbox := auth.CanonicalName(username)
	// The default folders exist from the first login on.
	if _, err := s.b.Folders.ListFolders(mailbox); err != nil {
		s.b.Counter.IMAPLogin("error")
		return s.storeErr("login", err)
	}
	s.b.Counter.IMAPLogin("ok")
	s.mailbox = mailbox
	s.c.LoggedIn(mailbox)
	return nil
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (s *imapSession) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

// Authenticate implements imapserver.SessionSASL: PLAIN (RFC 4616), with
// no authorization identity other than the user's own.
func (s *imapSession) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && auth.CanonicalName(identity) != auth.CanonicalName(username) {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
				Text: "Authorization identity not allowed"}
		}
		return s.Login(username, password)
	}), nil
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s *imapSession) AppendLimit() uint32 {
	return uint32(min(s.b.AppendLimit, 1<<32-1))
}

// Namespace implements imapserver.SessionNamespace (RFC 2342): one
// personal namespace, no others.
func (s *imapSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: store.FolderSep}}}, nil
}

// folderName maps a client's mailbox name to the store's: INBOX in any
// case is INBOX (RFC 9051 §5.1).
func folderName(name string) string {
	if strings.EqualFold(name, store.Inbox) {
		return store.Inbox
	}
	if len(name) > len(store.Inbox) && strings.EqualFold(name[:len(store.Inbox)], store.Inbox) && name[len(store.Inbox)] == store.FolderSep {
		return store.Inbox + name[len(store.Inbox):]
	}
	return name
}

// Create implements imapserver.Session (RFC 9051 §6.3.4).
func (s *imapSession) Create(name string, options *imap.CreateOptions) error {
	name = strings.TrimSuffix(folderName(name), string(store.FolderSep))
	if options != nil && len(options.SpecialUse) > 0 {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR",
			Text: "Special-use attributes are fixed by folder name"}
	}
	return s.folderErr("create", s.b.Folders.CreateFolder(s.mailbox, name))
}

// Delete implements imapserver.Session (RFC 9051 §6.3.5).
func (s *imapSession) Delete(name string) error {
	name = folderName(name)
	if s.sel != nil && s.sel.name == name {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Folder is selected"}
	}
	return s.folderErr("delete", s.b.Folders.DeleteFolder(s.mailbox, name))
}

// Rename implements imapserver.Session (RFC 9051 §6.3.6).
func (s *imapSession) Rename(from, to string, _ *imap.RenameOptions) error {
	return s.folderErr("rename", s.b.Folders.RenameFolder(s.mailbox, folderName(from), folderName(to)))
}

// Subscribe implements imapserver.Session (RFC 9051 §6.3.7).
func (s *imapSession) Subscribe(name string) error {
	return s.folderErr("subscribe", s.b.Folders.SetSubscribed(s.mailbox, folderName(name), true))
}

// Unsubscribe implements imapserver.Session (RFC 9051 §6.3.8).
func (s *imapSession) Unsubscribe(name string) error {
	return s.folderErr("unsubscribe", s.b.Folders.SetSubscribed(s.mailbox, folderName(name), false))
}

// List implements imapserver.Session: LIST with the LIST-EXTENDED
// selection and return options (RFC 5258), CHILDREN (RFC 3348),
// SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819).
func (s *imapSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if options == nil {
		options = &imap.ListOptions{}
	}
	// RFC 9051 §6.3.9: an empty pattern asks for the delimiter and root.
	if len(patterns) == 1 && patterns[0] == "" {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: store.FolderSep})
	}
	folders, err := s.b.Folders.ListFolders(s.mailbox)
	if err != nil {
		return s.storeErr("list", err)
	}
	exists := make(map[string]bool, len(folders))
	for _, f := range folders {
		exists[f.Name] = true
	}
	for _, f := range folders {
		if !listMatch(f.Name, ref, patterns) {
			continue
		}
		if options.SelectSubscribed && !f.Subscribed {
			continue
		}
		if options.SelectSpecialUse && f.SpecialUse == "" {
			continue
		}
		data := &imap.ListData{Delim: store.FolderSep, Mailbox: f.Name}
		if hasChildren(f.Name, folders) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if f.Subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if f.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(f.SpecialUse))
		}
		if options.ReturnStatus != nil {
			st, err := s.status(f.Name, options.ReturnStatus)
			if err != nil {
				return err
			}
			data.Status = st
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	// RFC 5258 §3.1: subscribed names without a folder are listed as
	// \NonExistent.
	if options.SelectSubscribed {
		subs, err := s.subscribedOnly(exists)
		if err != nil {
			return err
		}
		for _, name := range subs {
			if !listMatch(name, ref, patterns) {
				continue
			}
			if err := w.WriteList(&imap.ListData{Delim: store.FolderSep, Mailbox: name,
				Attrs: []imap.MailboxAttr{imap.MailboxAttrNonExistent, imap.MailboxAttrSubscribed}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// subscribedOnly returns the subscribed names that are not folders.
func (s *imapSession) subscribedOnly(exists map[string]bool) ([]string, error) {
	subs, err := s.b.Folders.Subscriptions(s.mailbox)
	if err != nil {
		return nil, s.storeErr("list", err)
	}
	var out []string
	for _, n := range subs {
		if !exists[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

func listMatch(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, store.FolderSep, ref, p) {
			return true
		}
	}
	return false
}

func hasChildren(name string, folders []store.FolderInfo) bool {
	prefix := name + string(store.FolderSep)
	for _, f := range folders {
		if strings.HasPrefix(f.Name, prefix) {
			return true
		}
	}
	return false
}

// Status implements imapserver.Session (RFC 9051 §6.3.11).
func (s *imapSession) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	return s.status(folderName(name), options)
}

func (s *imapSession) status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	f, err := s.b.Folders.OpenFolder(s.mailbox, name)
	if err != nil {
		return nil, s.folderErr("status", err)
	}
	defer f.Close()
	st, err := f.Sync()
	if err != nil {
		return nil, s.storeErr("status", err)
	}
	data := &imap.StatusData{Mailbox: name}
	if options.NumMessages {
		n := uint32(len(st.Messages))
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(st.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = st.UIDValidity
	}
	if options.NumRecent {
		var zero uint32
		data.NumRecent = &zero
	}
	var unseen, deleted uint32
	var size int64
	for i := range st.Messages {
		m := &st.Messages[i]
		if !hasFlag(m.Flags, store.FlagSeen) {
			unseen++
		}
		if hasFlag(m.Flags, store.FlagDeleted) {
			deleted++
		}
		size += m.Size
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.AppendLimit {
		limit := s.AppendLimit()
		data.AppendLimit = &limit
	}
	return data, nil
}

// Append implements imapserver.Session (RFC 9051 §6.3.12): the message is
// durable before the tagged OK [APPENDUID] (RFC 4315).
func (s *imapSession) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	name = folderName(name)
	f, err := s.b.Folders.OpenFolder(s.mailbox, name)
	if errors.Is(err, store.ErrNotFound) {
		// RFC 9051 §6.3.12: TRYCREATE when the folder does not exist.
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such folder"}
	}
	if err != nil {
		return nil, s.folderErr("append", err)
	}
	defer f.Close()
	var flags []string
	if options != nil {
		flags = storeFlags(options.Flags)
	}
	var date time.Time
	if options != nil {
		date = options.Time
	}
	uid, err := f.Append(r, flags, date)
	if err != nil {
		return nil, s.storeErr("append", err)
	}
	st, err := f.Sync()
	if err != nil {
		return nil, s.storeErr("append", err)
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: st.UIDValidity}, nil
}

// storeErr logs err and answers NO [SERVERBUG]-free text; disk full and
// locks get their response codes (RFC 5530).
func (s *imapSession) storeErr(op string, err error) error {
	var imapErr *imap.Error
	switch {
	case errors.As(err, &imapErr):
		return err
	case errors.Is(err, store.ErrNoSpace):
		s.b.Counter.StoreError(op)
		s.c.Logger.Error("imap "+op, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Mail storage is full"}
	case errors.Is(err, store.ErrLocked):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse,
			Text: "A POP3 session holds this mailbox; try again after it ends"}
	case errors.Is(err, store.ErrTooManyKeywords):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Too many keywords in this folder"}
	case errors.Is(err, store.ErrNotFound):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such folder or message"}
	}
	s.b.Counter.StoreError(op)
	s.c.Logger.Error("imap "+op, "err", err)
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
		Text: fmt.Sprintf("Temporary storage failure (%s), try again", s.c.ID)}
}

// folderErr is storeErr for the folder commands.
func (s *imapSession) folderErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrFolderExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Folder exists"}
	case errors.Is(err, store.ErrBadFolder), errors.Is(err, store.ErrBadMailbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid folder name"}
	case errors.Is(err, store.ErrHasChildren):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeHasChildren, Text: "Folder has subfolders"}
	case errors.Is(err, store.ErrCannot):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Not possible on this folder"}
	}
	return s.storeErr(op, err)
}
