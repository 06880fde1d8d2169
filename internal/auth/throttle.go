package auth

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Defaults of ThrottleConfig.
const (
	DefaultBaseDelay   = 2 * time.Second
	DefaultMaxDelay    = 15 * time.Second
	DefaultMaxFailures = 10
	DefaultWindow      = 15 * time.Minute
	DefaultMaxTracked  = 100_000
)

// ErrAuthFailed is returned by [Throttle.Check] for a failed login, after
// the penalty delay.
var ErrAuthFailed = errors.New("authentication failed")

// ThrottleConfig configures a [Throttle]. Zero fields take the defaults.
type ThrottleConfig struct {
	// BaseDelay is the delay after the first failed login from a client;
	// it doubles with each further consecutive failure, up to MaxDelay.
	// Default 2s; negative disables the delay (for tests only: the design
	// applies it to every client).
	BaseDelay time.Duration
	// MaxDelay caps the delay. Default 15s.
	MaxDelay time.Duration
	// MaxFailures is how many failed logins a client may make within
	// Window before it is blocked until the window ends. Default 10;
	// negative disables blocking.
	MaxFailures int
	// Window is the period over which failures are counted. It starts at
	// a client's first failure and is fixed, as Postfix anvil's time unit.
	// Default 15 minutes.
	Window time.Duration
	// Exempt reports clients never blocked (loopback and trusted
	// networks); they are still delayed. Nil means loopback addresses
	// are exempt. netpolicy.Networks.IsLocal fits.
	Exempt func(netip.Addr) bool
	// MaxTracked bounds the number of clients remembered; when it is
	// reached the least recently failing client is forgotten. Default
	// 100000 (roughly 15 MB).
	MaxTracked int
	// Now returns the current time. Default time.Now; tests set it.
	Now func() time.Time
	// Logger receives the "auth blocked" line. Nil discards it.
	Logger *slog.Logger
}

// Throttle slows down and caps failed logins per client, for both the
// SMTP AUTH and the POP3 USER/PASS and AUTH commands, like Dovecot's
// auth penalty plus Postfix's anvil: each consecutive failure from a
// client doubles the delay before the failure is answered, and a client
// with too many failures within a window is refused new connections until
// the window ends.
//
// Clients are tracked by IPv4 address, or by the /64 prefix of an IPv6
// address, since one IPv6 host usually holds a whole /64. Memory is
// bounded by MaxTracked; entries whose window has ended are pruned.
//
// Typical use by a protocol engine:
//
//	if t.Blocked(ip) { reply 421 / -ERR [AUTH]; close }
//	...
//	if err := t.Check(ctx, ip, users.Verify(name, pass)); err != nil {
//		reply 535 / -ERR [AUTH]
//	}
//
// A nil *Throttle allows everything and never delays. It is safe for
// concurrent use.
type Throttle struct {
	cfg ThrottleConfig

	mu      sync.Mutex
	clients map[netip.Prefix]*list.Element // of *client
	lru     *list.List                     // front: most recent failure
}

// client is the state kept for one IPv4 address or IPv6 /64.
type client struct {
	key         netip.Prefix
	consecutive int       // failures since the last success
	count       int       // failures in the current window
	windowStart time.Time // time of the first failure of the window
	last        time.Time // time of the latest failure
}

// NewThrottle returns a Throttle configured by cfg, with defaults applied.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay = DefaultBaseDelay
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Exempt == nil {
		cfg.Exempt = netip.Addr.IsLoopback
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = DefaultMaxTracked
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Throttle{cfg: cfg, clients: make(map[netip.Prefix]*list.Element), lru: list.New()}
}

// clientKey returns the tracking key of ip: the address itself for IPv4
// (including IPv4-mapped IPv6), its /64 for IPv6.
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p
	}
	return netip.PrefixFrom(ip, ip.BitLen())
}

// Blocked reports whether ip has reached MaxFailures within the current
// window and is not exempt: new connections from it should be refused
// (SMTP 421 4.7.0, POP3 -ERR [AUTH]) and further logins not attempted.
func (t *Throttle) Blocked(ip netip.Addr) bool {
	if t == nil || t.cfg.MaxFailures < 0 || t.cfg.Exempt(ip.Unmap()) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	t.prune(now)
	e, ok := t.clients[clientKey(ip)]
	if !ok {
		return false
	}
	c := e.Value.(*client)
	return c.count >= t.cfg.MaxFailures && now.Sub(c.windowStart) < t.cfg.Window
}

// Failure records a failed login from ip and returns how long to wait
// before answering it: BaseDelay doubled for each earlier consecutive
// failure, at most MaxDelay. When the failure reaches MaxFailures within
// the window of a client that is not exempt, one line is logged at Warn,
// for an operator or fail2ban:
//
//	level=WARN msg="auth blocked" ip=192.0.2.7 failures=10 window=15m0s
func (t *Throttle) Failure(ip netip.Addr) time.Duration {
	if t == nil {
		return 0
	}
	ip = ip.Unmap()
	key := clientKey(ip)
	t.mu.Lock()
	now := t.cfg.Now()
	t.prune(now)
	var c *client
	if e, ok := t.clients[key]; ok {
		c = e.Value.(*client)
		t.lru.MoveToFront(e)
	} else {
		for len(t.clients) >= t.cfg.MaxTracked {
			oldest := t.lru.Back()
			t.lru.Remove(oldest)
			delete(t.clients, oldest.Value.(*client).key)
		}
		c = &client{key: key}
		t.clients[key] = t.lru.PushFront(c)
	}
	if c.count == 0 || now.Sub(c.windowStart) >= t.cfg.Window {
		c.count, c.windowStart = 0, now
	}
	c.count++
	c.consecutive++
	c.last = now
	count, consecutive := c.count, c.consecutive
	t.mu.Unlock()

	if count == t.cfg.MaxFailures && !t.cfg.Exempt(ip) {
		attrs := []any{"ip", ip.String(), "failures", count, "window", t.cfg.Window}
		if ip.Is6() {
			attrs = append(attrs, "prefix", key.String())
		}
		t.cfg.Logger.Warn("auth blocked", attrs...)
	}
	return t.delay(consecutive)
}

// delay returns the penalty after n consecutive failures.
func (t *Throttle) delay(n int) time.Duration {
	if t.cfg.BaseDelay < 0 || n <= 0 {
		return 0
	}
	d := t.cfg.BaseDelay
	for i := 1; i < n && d < t.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, t.cfg.MaxDelay)
}

// Success records a successful login from ip: the next failure is again
// delayed by only BaseDelay. The count of failures in the window is kept,
// so interleaving a valid login does not lift the cap.
func (t *Throttle) Success(ip netip.Addr) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.clients[clientKey(ip)]; ok {
		e.Value.(*client).consecutive = 0
	}
}

// prune forgets clients whose latest failure is older than Window: their
// window has ended and their delay is reset. t.mu must be held.
func (t *Throttle) prune(now time.Time) {
	for e := t.lru.Back(); e != nil; e = t.lru.Back() {
		c := e.Value.(*client)
		if now.Sub(c.last) < t.cfg.Window {
			return
		}
		t.lru.Remove(e)
		delete(t.clients, c.key)
	}
}

// Len returns the number of clients currently tracked.
func (t *Throttle) Len() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.clients)
}

// Wait sleeps for d, or until ctx is done, in which case it returns
// ctx.Err(). The protocol engines use it to apply the penalty returned by
// Failure while still honouring server shutdown.
func (t *Throttle) Wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Check records the outcome ok of a login attempt from ip. On success it
// calls Success and returns nil. On failure it calls Failure, waits the
// penalty (see Wait) and returns [ErrAuthFailed]; if ctx ended during the
// wait, the error matches both ErrAuthFailed and ctx's error. It lets an engine handle a credential check in
// one line; Blocked is still to be consulted before each attempt.
func (t *Throttle) Check(ctx context.Context, ip netip.Addr, ok bool) error {
	if ok {
		t.Success(ip)
		return nil
	}
	if err := t.Wait(ctx, t.Failure(ip)); err != nil {
		return fmt.Errorf("%w: %w", ErrAuthFailed, err)
	}
	return ErrAuthFailed
}
