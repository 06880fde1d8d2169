package chaos

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"postoffice/internal/smtp"
)

// Engine holds the rules in force and answers the SMTP engine's Policy
// questions. The zero value has no rules; set Logger and Counted before
// use.
type Engine struct {
	// Logger receives a line for every injected fault.
	Logger *slog.Logger
	// Counted, when set, is called for every injected fault with the stage
	// and the action (reply, drop, delay, rate_limit) — the metrics.
	Counted func(stage, action string)
	// Now is the clock of the rate limit; nil means time.Now.
	Now func() time.Time

	cur atomic.Pointer[ruleSet]
}

var _ smtp.Policy = (*Engine)(nil)

// ruleSet is one Config in force with its random source and rate counts.
type ruleSet struct {
	cfg     Config // as given, for View (Seed is the one used)
	source  string // "file" or "api"
	byStage map[smtp.Stage][]*Rule

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	rate *limiter // nil without a rate limit
}

// Set puts the rule set c (validated) in force, replacing any other, and
// restarts its random sequence from the seed; source says where it came
// from ("file" or "api"). An empty set (no rules, no rate) clears.
func (e *Engine) Set(c *Config, source string) {
	if c == nil || len(c.Rules) == 0 && c.Rate == nil {
		e.Clear()
		return
	}
	rs := &ruleSet{cfg: *c, source: source, byStage: map[smtp.Stage][]*Rule{}}
	rs.cfg.Rules = append([]Rule(nil), c.Rules...)
	if rs.cfg.Seed == 0 {
		rs.cfg.Seed = rand.Int64N(1<<53) + 1 // shown by View, to repeat the run
	}
	rs.rng = rand.New(rand.NewPCG(uint64(rs.cfg.Seed), uint64(rs.cfg.Seed)^0x9e3779b97f4a7c15))
	for i := range rs.cfg.Rules {
		r := &rs.cfg.Rules[i]
		rs.byStage[r.stage] = append(rs.byStage[r.stage], r)
	}
	if c.Rate != nil {
		rs.rate = &limiter{n: c.Rate.PerSecond, seen: map[netip.Addr][]time.Time{}}
	}
	e.cur.Store(rs)
	e.logger().Warn("chaos rules in force: SMTP answers faults on purpose", "source", source, "rules", len(rs.cfg.Rules), "rate_per_second", perSecond(c.Rate), "seed", rs.cfg.Seed)
}

// Clear removes every rule: SMTP answers as without chaos.
func (e *Engine) Clear() {
	if e.cur.Swap(nil) != nil {
		e.logger().Info("chaos rules cleared")
	}
}

// View is what GET /api/v1/chaos shows.
type View struct {
	Enabled bool   `json:"enabled"`
	Source  string `json:"source,omitempty"` // "file" (--chaos) or "api"
	Seed    int64  `json:"seed,omitempty"`   // the seed in use (drawn when none was given)
	Rules   []Rule `json:"rules"`
	Rate    *Rate  `json:"rate,omitempty"`
}

// View returns the rules in force.
func (e *Engine) View() View {
	rs := e.cur.Load()
	if rs == nil {
		return View{Rules: []Rule{}}
	}
	rules := rs.cfg.Rules
	if rules == nil {
		rules = []Rule{} // a set without "rules" (only a rate): [] as documented, not null
	}
	return View{Enabled: true, Source: rs.source, Seed: rs.cfg.Seed, Rules: rules, Rate: rs.cfg.Rate}
}

// Check implements smtp.Policy: the rate limit at MAIL, then the first
// rule of the stage that matches and wins its draw.
func (e *Engine) Check(ctx context.Context, q smtp.PolicyQuery) error {
	rs := e.cur.Load()
	if rs == nil {
		return nil
	}
	if q.Stage == smtp.StageMail && rs.rate != nil && !rs.rate.allow(q.Conn.RemoteIP, e.now()) {
		e.injected(q, -1, "rate_limit")
		return &smtp.Error{Code: 421, Enhanced: "4.7.0", Message: "Too many messages from your address, try again later (chaos rate limit)"}
	}
	for _, r := range rs.byStage[q.Stage] {
		if !r.matches(q) || !rs.draw(r) {
			continue
		}
		e.injected(q, ruleIndex(rs, r), r.Action)
		switch r.Action {
		case ActionDrop:
			return smtp.ErrDrop
		case ActionDelay:
			t := time.NewTimer(r.delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			return nil
		}
		e2 := *r.err
		return &e2
	}
	return nil
}

// ruleIndex is the 1-based position of r in the rule set, as the API shows
// it.
func ruleIndex(rs *ruleSet, r *Rule) int {
	for i := range rs.cfg.Rules {
		if &rs.cfg.Rules[i] == r {
			return i + 1
		}
	}
	return 0
}

// matches reports whether the rule's glob matches what stage q is about.
func (r *Rule) matches(q smtp.PolicyQuery) bool {
	if r.Match == "" {
		return true
	}
	switch q.Stage {
	case smtp.StageConnect:
		return match(r.Match, q.Conn.RemoteIP.String())
	case smtp.StageData, smtp.StageMessage:
		if q.Env == nil {
			return false
		}
		if match(r.Match, q.Env.From) {
			return true
		}
		for _, to := range q.Env.To {
			if match(r.Match, to) {
				return true
			}
		}
		return false
	}
	return match(r.Match, q.Arg)
}

// draw reports whether a matching rule is hit: always without a
// probability, else by one draw of the seeded source.
func (rs *ruleSet) draw(r *Rule) bool {
	if r.Probability == nil || *r.Probability >= 1 {
		return true
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.rng.Float64() < *r.Probability
}

func (e *Engine) injected(q smtp.PolicyQuery, rule int, action string) {
	args := []any{"conn", q.Conn.ID, "stage", string(q.Stage), "action", action, "remote_ip", q.Conn.RemoteIP.String()}
	if rule > 0 {
		args = append(args, "rule", rule)
		if rs := e.cur.Load(); rs != nil && rule <= len(rs.cfg.Rules) {
			r := rs.cfg.Rules[rule-1]
			if r.err != nil {
				args = append(args, "reply", r.err.Error())
			}
			if r.Match != "" {
				args = append(args, "match", r.Match)
			}
		}
	}
	if q.Arg != "" {
		args = append(args, "arg", q.Arg)
	}
	e.logger().Info("chaos: fault injected", args...)
	if e.Counted != nil {
		e.Counted(string(q.Stage), action)
	}
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func perSecond(r *Rate) int {
	if r == nil {
		return 0
	}
	return r.PerSecond
}

// limiter counts MAIL commands per client IP over a sliding second: the
// times of the last n let through.
type limiter struct {
	mu    sync.Mutex
	n     int
	seen  map[netip.Addr][]time.Time
	sweep time.Time
}

// allow reports whether one more MAIL from ip may go through at now, and
// counts it if so.
func (l *limiter) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := now.Add(-time.Second)
	if now.Sub(l.sweep) > 10*time.Second {
		// Forget the addresses that sent nothing within the window.
		for a, ts := range l.seen {
			if len(ts) == 0 || !ts[len(ts)-1].After(cut) {
				delete(l.seen, a)
			}
		}
		l.sweep = now
	}
	ts := l.seen[ip]
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) >= l.n {
		l.seen[ip] = ts
		return false
	}
	l.seen[ip] = append(ts, now)
	return true
}

// ChaosView, SetChaos and ClearChaos are the web API's view of the Engine
// (web.ChaosControl).
func (e *Engine) ChaosView() any { return e.View() }

// SetChaos puts a JSON rule set in force (source "api").
func (e *Engine) SetChaos(body []byte) error {
	c, err := ParseJSON(body)
	if err != nil {
		return err
	}
	e.Set(c, "api")
	return nil
}

// ClearChaos is Clear.
func (e *Engine) ClearChaos() { e.Clear() }
