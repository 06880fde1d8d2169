package backend

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"postoffice/internal/auth"
)

// Authenticator checks credentials for SMTP AUTH and POP3 logins; it
// applies any failed-login delay and per-IP cap itself.
type Authenticator interface {
	// Check returns nil for good credentials, ErrBadCredentials for bad
	// ones, ErrBlocked when the client is refused.
	Check(ctx context.Context, ip netip.Addr, username, password string) error
}

// Errors of an Authenticator.
var (
	ErrBadCredentials = errors.New("bad credentials")
	ErrBlocked        = errors.New("too many failed logins")
)

// AuthCounter counts failed logins (the metrics).
type AuthCounter interface {
	// AuthFailure counts one failed login of proto, the delay it was
	// given, and whether it got the client blocked.
	AuthFailure(proto string, penalty time.Duration, blocked bool)
}

// Authn is the Authenticator of Postoffice: it checks credentials against
// the current users with the failed-login throttle that SMTP, POP3 and the
// web share. Make one per protocol, so that failures are counted by
// protocol.
type Authn struct {
	Users    func() *auth.Users
	Throttle *auth.Throttle
	Counter  AuthCounter
	Proto    string // "smtp", "pop3": the counter's label
}

var _ Authenticator = (*Authn)(nil)

// Check implements Authenticator: it is auth.Throttle.Check spelled out,
// to count failures, penalties and blocks.
func (a *Authn) Check(ctx context.Context, ip netip.Addr, username, password string) error {
	if a.Throttle.Blocked(ip) {
		return ErrBlocked
	}
	if a.Users().Verify(username, password) {
		a.Throttle.Success(ip)
		return nil
	}
	wasBlocked := a.Throttle.Blocked(ip)
	penalty := a.Throttle.Failure(ip)
	a.Counter.AuthFailure(a.Proto, penalty, !wasBlocked && a.Throttle.Blocked(ip))
	a.Throttle.Wait(ctx, penalty)
	return ErrBadCredentials
}
