package server

import (
	"context"
	"errors"
	"io"

	"postoffice/internal/backend"
	"postoffice/internal/netpolicy"
	"postoffice/internal/relay"
	"postoffice/internal/smtp"
	"postoffice/internal/web"
)

// apiSubmitter is the web API's send on the SMTP backend: the same
// routing, trace header, store and metrics as an SMTP DATA.
type apiSubmitter struct{ b *backend.SMTP }

// Submit delivers with Received "with HTTP" (or HTTPS); the SMTP errors
// of the backend become web.SubmitErrors.
func (a *apiSubmitter) Submit(ctx context.Context, sub web.Submission, r io.Reader) (web.SubmitResult, error) {
	env := &smtp.Envelope{
		Conn:     smtp.ConnInfo{ID: netpolicy.NewID(), RemoteIP: sub.ClientIP},
		TLS:      sub.TLS,
		AuthUser: sub.User,
		From:     sub.From,
		To:       sub.To,
		SMTPUTF8: sub.SMTPUTF8,
	}
	with := "HTTP"
	if sub.TLS != nil {
		with = "HTTPS"
	}
	d, err := a.b.Submit(ctx, env, with, r)
	if err == nil {
		return web.SubmitResult{ID: d.ID, Mailboxes: d.Mailboxes}, nil
	}
	var re *backend.RecipientError
	if errors.As(err, &re) {
		return web.SubmitResult{}, &web.SubmitError{Recipient: re.Recipient, Reply: reply(re.Err)}
	}
	var se *smtp.Error
	if errors.As(err, &se) {
		return web.SubmitResult{}, &web.SubmitError{Reply: reply(se)}
	}
	return web.SubmitResult{}, err
}

func reply(e *smtp.Error) web.SMTPReply {
	return web.SMTPReply{Code: e.Code, Enhanced: e.Enhanced, Message: e.Message}
}

// relayClient is the SMTP client of the API's release.
func (s *Server) relayClient() *relay.Client {
	return &relay.Client{Hostname: s.cfg.Hostname, Timeout: s.cfg.RelayTimeout, InsecureTLS: s.cfg.RelayInsecureTLS}
}

// relayPolicy is what --relay-allow, --relay-addr and --relay-allow-addr
// allow.
func (s *Server) relayPolicy() *relay.Policy {
	return &relay.Policy{Allow: s.cfg.RelayAllow, Addr: s.cfg.RelayAddr, AllowAddrs: s.cfg.RelayAllowAddr}
}
