package smtp

import (
	"context"
	"errors"
	"io"
)

// Stage names a point of an SMTP session where a Policy is asked whether
// the session goes on.
type Stage string

// The stages, in the order a session meets them.
const (
	// StageConnect: before the greeting. Arg is "" (match the client IP
	// from Conn).
	StageConnect Stage = "connect"
	// StageHelo: a syntactically valid HELO or EHLO, before its reply.
	// Arg is the name given.
	StageHelo Stage = "ehlo"
	// StageMail: a syntactically valid MAIL, before Backend.Mail. Arg is
	// the reverse-path ("" for <>).
	StageMail Stage = "mail"
	// StageRcpt: a syntactically valid RCPT within the recipient limit,
	// before Backend.Rcpt. Arg is the forward-path.
	StageRcpt Stage = "rcpt"
	// StageData: the DATA command (before 354) or the first BDAT chunk of
	// a transaction (before its data is read), with at least one
	// recipient. Env is the transaction.
	StageData Stage = "data"
	// StageMessage: the whole message was received (the end of DATA's
	// data, BDAT LAST), before the backend makes it durable and before
	// the final reply. Env is the transaction.
	StageMessage Stage = "message"
)

// PolicyQuery is what a Policy is asked about.
type PolicyQuery struct {
	Stage Stage
	Conn  ConnInfo
	Helo  string    // the HELO/EHLO name so far ("" before it)
	Arg   string    // see the stages
	Env   *Envelope // the transaction at StageRcpt, StageData and StageMessage; nil before MAIL
}

// Policy lets the server owner answer in place of the engine at the
// stages of a session: fault injection for tests, rate limits. It is
// asked from many sessions at once.
//
// Check returns nil for the session to go on as usual (after any delay it
// chose to wait, bounded by ctx), an *Error to send instead of what the
// engine would have done, or ErrDrop to close the connection at once
// without a reply (replies queued but not yet sent are lost, as in a
// crash). An *Error at a stage ends that step only: a refused MAIL leaves
// no transaction, a refused RCPT leaves the others, a refused DATA/first
// BDAT ends the transaction, a refused message stores nothing. A 421 at
// any stage also closes the connection (RFC 5321 §3.8). At StageConnect a
// 554 replaces the greeting and every later command but QUIT is answered
// 503 (RFC 5321 §3.1); there only 421 and 554 are valid.
type Policy interface {
	Check(ctx context.Context, q PolicyQuery) error
}

// ErrDrop is returned by a Policy to close the connection without a reply.
var ErrDrop = errors.New("smtp: drop the connection")

// policy asks the Server's Policy, if any, about stage. It returns nil to go
// on. A nil Policy costs one comparison.
func (s *session) policy(stage Stage, arg string, env *Envelope) error {
	p := s.srv.Policy
	if p == nil {
		return nil
	}
	return p.Check(s.ctx, PolicyQuery{Stage: stage, Conn: s.info, Helo: s.helo, Arg: arg, Env: env})
}

// refusedBy handles what policy returned at a command: an *Error is
// answered (421 closes), ErrDrop closes the connection without a reply.
// Any other error is answered like a backend's. It reports whether the
// command was refused (err != nil).
func (s *session) refusedBy(op string, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrDrop):
		s.drop(op)
	default:
		s.backendError(op, err)
	}
	return true
}

// drop ends the session without sending anything more.
func (s *session) drop(op string) {
	s.log.Info("connection dropped by policy", "at", op)
	s.closing = true
	s.dropped = true
	s.lastCode = 0 // no reply: the Observer counts it as "other"
}

// policyReader asks the Policy at StageMessage when the message data ends
// (the reader's EOF). What the policy answers replaces the EOF, so that the
// backend stores nothing (the Backend.Data contract) and the session
// answers it.
type policyReader struct {
	r       io.Reader
	s       *session
	env     *Envelope
	asked   bool
	verdict error // what the policy answered at the end; nil to go on
}

func (p *policyReader) Read(b []byte) (int, error) {
	if p.verdict != nil {
		return 0, p.verdict
	}
	n, err := p.r.Read(b)
	if err == io.EOF && !p.asked {
		p.asked = true
		if v := p.s.policy(StageMessage, "", p.env); v != nil {
			p.verdict = v
			return n, v
		}
	}
	return n, err
}

// messageReader wraps the reader given to Backend.Data for the
// StageMessage check; without a Policy it is r itself.
func (s *session) messageReader(r io.Reader, env *Envelope) (io.Reader, *policyReader) {
	if s.srv.Policy == nil {
		return r, nil
	}
	pr := &policyReader{r: r, s: s, env: env}
	return pr, pr
}

// result is the policy's answer at the end of the message, nil if none.
func (p *policyReader) result() error {
	if p == nil {
		return nil
	}
	return p.verdict
}
