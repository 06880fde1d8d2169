package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"postoffice/internal/metrics"
	"postoffice/internal/store"
)

// Retention (--retention-max-age, --retention-max-messages) is off by
// default: a mail drop never loses mail on its own. When on, a pruner
// removes what the policy says from every mailbox every --retention-interval,
// and from the mailboxes that received mail shortly after each delivery.
//
// Each pass removes at most pruneBatch messages in all, so a first pass over
// a large backlog does not hold the disk for long; the rest follows in the
// next passes, which come quickly while a backlog remains. A mailbox whose
// POP3 lock is held is skipped (store.Prune takes the lock without waiting):
// a session's snapshot never loses a message under it.

// pruneBatch bounds the messages one pass removes.
const pruneBatch = 1000

// pruneDebounce is the pause between passes triggered by deliveries or by
// a backlog.
const pruneDebounce = time.Second

// prunable is what the pruner needs of the store.
type prunable interface {
	store.Events
	store.Admin
}

// pruner runs retention passes in the background.
type pruner struct {
	st       prunable
	policy   store.RetentionPolicy
	interval time.Duration
	log      *slog.Logger
	m        *metrics.Metrics
	now      func() time.Time

	mu    sync.Mutex
	dirty map[string]bool // mailboxes that got mail since the last pass
	kick  chan struct{}   // cap 1: a delivery or a backlog wants a pass
	done  chan struct{}   // closed when run returns
}

func newPruner(st prunable, policy store.RetentionPolicy, interval time.Duration, log *slog.Logger, m *metrics.Metrics) *pruner {
	return &pruner{st: st, policy: policy, interval: interval, log: log, m: m, now: time.Now,
		dirty: map[string]bool{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// run prunes until ctx ends: a full pass at once and every interval, and a
// pass over the mailboxes that got mail when deliveries arrive (only with
// --retention-max-messages: age alone does not change on delivery).
func (p *pruner) run(ctx context.Context) {
	defer close(p.done)
	if p.policy.MaxMessages > 0 {
		cancel := p.st.Subscribe(func(ev store.Event) {
			if ev.Folder != "" || ev.Kind != store.EventArrived {
				return // retention prunes INBOX only
			}
			p.mu.Lock()
			p.dirty[ev.Mailbox] = true
			p.mu.Unlock()
			p.poke()
		})
		defer cancel()
	}
	p.log.Info("retention on", "max_age", p.policy.MaxAge.String(), "max_messages", p.policy.MaxMessages, "interval", p.interval.String())
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	full := true
	for {
		var boxes []string
		if full {
			var err error
			if boxes, err = p.st.Mailboxes(); err != nil {
				p.log.Warn("retention: listing mailboxes", "err", err)
			}
			p.mu.Lock()
			clear(p.dirty)
			p.mu.Unlock()
		} else {
			p.mu.Lock()
			for mb := range p.dirty {
				boxes = append(boxes, mb)
			}
			clear(p.dirty)
			p.mu.Unlock()
		}
		backlog := p.pass(ctx, boxes)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pruneDebounce):
		}
		if backlog {
			full = true // go on with the rest at once
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			full = true
		case <-p.kick:
			full = false
		}
	}
}

// poke asks for a pass without blocking.
func (p *pruner) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// wait returns when run has returned.
func (p *pruner) wait() { <-p.done }

// pass prunes boxes within the batch budget and reports whether the
// budget ran out with more to remove.
func (p *pruner) pass(ctx context.Context, boxes []string) (more bool) {
	p.m.RetentionPass()
	budget := pruneBatch
	for _, mb := range boxes {
		if ctx.Err() != nil {
			return false
		}
		if budget == 0 {
			return true
		}
		res, err := p.st.Prune(mb, p.policy, budget, p.now())
		switch {
		case errors.Is(err, store.ErrLocked):
			p.m.RetentionSkipped("locked")
			p.log.Debug("retention: mailbox in use, skipped", "mailbox", mb)
			continue
		case err != nil:
			p.m.RetentionSkipped("error")
			p.m.StoreError("prune")
			p.log.Warn("retention: pruning failed", "mailbox", mb, "err", err)
			continue
		}
		if res.Removed > 0 {
			p.m.RetentionRemoved(res.Removed, res.Bytes)
			p.log.Info("retention: removed messages", "mailbox", mb, "removed", res.Removed, "bytes", res.Bytes, "left", res.Left)
		}
		budget -= res.Removed
		if res.More {
			more = true
		}
	}
	return more
}
