package backend

import (
	"context"
	"errors"
	"fmt"

	"postoffice/internal/auth"
	"postoffice/internal/pop3"
	"postoffice/internal/store"
)

// This file is the POP3 backend: logins through the Authenticator, then
// the user's maildrop from the store.

// POP3Counter counts what the POP3 backend sees (the metrics).
type POP3Counter interface {
	// POP3Login counts a login by result: ok, failed, blocked, in_use,
	// error.
	POP3Login(result string)
	// POP3Deleted counts messages a QUIT removed.
	POP3Deleted(n int)
	// StoreError counts a failed store operation ("commit").
	StoreError(op string)
}

// POP3 implements pop3.Backend on a store.
type POP3 struct {
	Auth    Authenticator
	Store   store.MaildropOpener
	Counter POP3Counter
}

var _ pop3.Backend = (*POP3)(nil)

// Login checks the credentials, then opens the user's maildrop: the
// mailbox named by the canonical user name (RFC 1939 §8: an exclusive
// lock; a second session gets pop3.ErrInUse).
func (b *POP3) Login(ctx context.Context, c pop3.ConnInfo, username, password string) (pop3.Maildrop, error) {
	switch err := b.Auth.Check(ctx, c.RemoteIP, username, password); {
	case errors.Is(err, ErrBlocked):
		b.Counter.POP3Login("blocked")
		return nil, pop3.ErrBlocked
	case errors.Is(err, ErrBadCredentials):
		b.Counter.POP3Login("failed")
		return nil, pop3.ErrAuthFailed
	case err != nil:
		b.Counter.POP3Login("error")
		return nil, err
	}
	md, err := b.Store.OpenMaildrop(auth.CanonicalName(username))
	if errors.Is(err, store.ErrLocked) {
		b.Counter.POP3Login("in_use")
		return nil, pop3.ErrInUse
	}
	if err != nil {
		b.Counter.POP3Login("error")
		return nil, fmt.Errorf("open maildrop %s: %w", username, err)
	}
	b.Counter.POP3Login("ok")
	msgs := md.Messages()
	out := make([]pop3.Message, len(msgs))
	for i, m := range msgs {
		out[i] = pop3.Message{UID: m.ID, Size: m.Size}
	}
	return &maildrop{Maildrop: md, msgs: out, c: b.Counter}, nil
}

// maildrop adapts a store.Maildrop to the POP3 engine's interface.
type maildrop struct {
	store.Maildrop
	msgs []pop3.Message
	c    POP3Counter
}

func (m *maildrop) Messages() []pop3.Message { return m.msgs }

var _ pop3.Retriever = (*maildrop)(nil)

// Retrieved implements pop3.Retriever: a message RETR sent in full is
// marked seen in the store (store.Maildrop.MarkSeen), as Dovecot's POP3
// does, so that IMAP and the web inbox show it read.
func (m *maildrop) Retrieved(i int) error { return m.Maildrop.MarkSeen(i) }

// Commit counts the messages a POP3 QUIT removes.
func (m *maildrop) Commit(indexes []int) error {
	err := m.Maildrop.Commit(indexes)
	if err != nil {
		m.c.StoreError("commit")
		return err
	}
	m.c.POP3Deleted(len(indexes))
	return nil
}
