package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"postoffice/internal/backend"
	"postoffice/internal/chaos"
	"postoffice/internal/metrics"
	"postoffice/internal/webhook"
)

// Fault injection (--chaos, /api/v1/chaos) and the delivery webhook
// (--webhook-url).

// webhookDrain bounds the time pending webhooks get at shutdown.
const webhookDrain = 5 * time.Second

// newChaos returns the chaos engine, with the rules of --chaos in force.
// The engine is the SMTP engine's Policy: with no rules it costs one
// atomic load per stage.
func (s *Server) newChaos(inj *metrics.Injection) (*chaos.Engine, error) {
	e := &chaos.Engine{Logger: s.log.With("proto", "smtp"), Counted: inj.ChaosInjected}
	if s.cfg.Chaos != "" {
		c, err := chaos.LoadFile(s.cfg.Chaos)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.cfg.Setting("chaos"), err)
		}
		e.Set(c, "file")
	}
	return e, nil
}

// reloadChaos re-reads --chaos (SIGHUP); an error keeps the rules in force.
func (s *Server) reloadChaos() error {
	if s.cfg.Chaos == "" || s.chaos == nil {
		return nil
	}
	c, err := chaos.LoadFile(s.cfg.Chaos)
	if err != nil {
		return fmt.Errorf("%s: %w", s.cfg.Setting("chaos"), err)
	}
	s.chaos.Set(c, "file")
	return nil
}

// newWebhook returns the webhook sender of --webhook-url, nil without one.
func (s *Server) newWebhook(inj *metrics.Injection) *webhook.Sender {
	if s.cfg.WebhookURL == "" {
		return nil
	}
	o := webhook.Options{
		URL:      s.cfg.WebhookURL,
		Secret:   s.cfg.WebhookSecret,
		Retries:  s.cfg.WebhookRetries,
		Timeout:  s.cfg.WebhookTimeout,
		Queue:    s.cfg.WebhookQueue,
		Logger:   s.log.With("proto", "webhook"),
		Counters: inj,
	}
	if s.index != nil {
		ix := s.index
		o.Lookup = func(mailbox, id string) (string, int64, bool) {
			sum, err := ix.Get(mailbox, id)
			return sum.Subject, sum.Size, err == nil
		}
	}
	s.log.Info("webhook on", "url", redactURL(s.cfg.WebhookURL), "signed", s.cfg.WebhookSecret != "")
	return webhook.New(o)
}

// delivered hands a durable delivery to the webhook: one notification per
// mailbox, queued without blocking the SMTP reply.
func (s *Server) delivered(d backend.Delivery) {
	for _, box := range d.Mailboxes {
		s.webhook.Enqueue(webhook.Notification{
			ID: d.ID, Mailbox: box,
			Envelope: webhook.Envelope{From: d.From, To: d.To},
			Size:     d.Size, Received: d.Received,
		})
	}
}

// stopWebhook lets pending notifications go out for a bounded time.
func (s *Server) stopWebhook(ctx context.Context) {
	if s.webhook == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, webhookDrain)
	defer cancel()
	if err := s.webhook.Shutdown(ctx); err != nil {
		s.log.Warn("webhook: shutdown before every notification was sent", "err", err)
	}
}

// redactURL hides the user info of a URL for the log.
func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}
