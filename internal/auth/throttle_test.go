package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// fakeClock is a settable time source for ThrottleConfig.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var (
	ipA = netip.MustParseAddr("192.0.2.1")
	ipB = netip.MustParseAddr("192.0.2.2")
)

func TestThrottleDelayDoublesAndCaps(t *testing.T) {
	clock := newFakeClock()
	th := NewThrottle(ThrottleConfig{Now: clock.Now, MaxFailures: -1})
	want := []time.Duration{2, 4, 8, 15, 15, 15}
	for i, w := range want {
		if got := th.Failure(ipA); got != w*time.Second {
			t.Errorf("failure %d: delay %v, want %v", i+1, got, w*time.Second)
		}
	}
	if got := th.Failure(ipB); got != 2*time.Second {
		t.Errorf("another IP: delay %v, want 2s", got)
	}
	th.Success(ipA)
	if got := th.Failure(ipA); got != 2*time.Second {
		t.Errorf("after Success: delay %v, want 2s", got)
	}
	// The delay resets once the client has been quiet for a window.
	th.Failure(ipA)
	clock.Advance(DefaultWindow)
	if got := th.Failure(ipA); got != 2*time.Second {
		t.Errorf("after a quiet window: delay %v, want 2s", got)
	}
}

func TestThrottleCustomDelays(t *testing.T) {
	th := NewThrottle(ThrottleConfig{BaseDelay: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond})
	for i, w := range []time.Duration{100, 200, 300, 300} {
		if got := th.Failure(ipA); got != w*time.Millisecond {
			t.Errorf("failure %d: delay %v, want %vms", i+1, got, w)
		}
	}
	off := NewThrottle(ThrottleConfig{BaseDelay: -1})
	if got := off.Failure(ipA); got != 0 {
		t.Errorf("disabled delay: %v", got)
	}
}

func TestThrottleCapAndWindow(t *testing.T) {
	clock := newFakeClock()
	var logs testsupport.LogBuffer
	th := NewThrottle(ThrottleConfig{
		Now:         clock.Now,
		MaxFailures: 3,
		Window:      10 * time.Minute,
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for i := range 2 {
		th.Failure(ipA)
		if th.Blocked(ipA) {
			t.Fatalf("blocked after %d failures, cap is 3", i+1)
		}
		clock.Advance(time.Minute)
	}
	th.Success(ipA) // a success does not lift the cap
	th.Failure(ipA)
	if !th.Blocked(ipA) {
		t.Fatal("not blocked after 3 failures within the window")
	}
	if th.Blocked(ipB) {
		t.Error("another IP is blocked")
	}
	log := logs.String()
	if strings.Count(log, "auth blocked") != 1 || !strings.Contains(log, "level=WARN") ||
		!strings.Contains(log, "ip=192.0.2.1 failures=3 window=10m0s") {
		t.Errorf("log = %q, want one WARN auth blocked line for fail2ban", log)
	}
	th.Failure(ipA) // further failures are not logged again
	if strings.Count(logs.String(), "auth blocked") != 1 {
		t.Errorf("blocked logged more than once: %q", logs.String())
	}

	// The window started at the first failure; it ends 10 minutes later.
	clock.Advance(8*time.Minute - time.Second)
	if !th.Blocked(ipA) {
		t.Error("unblocked before the window ended")
	}
	clock.Advance(time.Second)
	if th.Blocked(ipA) {
		t.Error("still blocked after the window ended")
	}
	// A fresh window counts from zero.
	th.Failure(ipA)
	if th.Blocked(ipA) {
		t.Error("blocked after one failure in a new window")
	}
}

func TestThrottleExemptDelayedNotBlocked(t *testing.T) {
	clock := newFakeClock()
	var logs testsupport.LogBuffer
	trusted := netip.MustParsePrefix("10.0.0.0/8")
	th := NewThrottle(ThrottleConfig{
		Now:         clock.Now,
		MaxFailures: 2,
		Exempt:      func(ip netip.Addr) bool { return ip.IsLoopback() || trusted.Contains(ip) },
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("::ffff:10.1.2.3"), netip.IPv6Loopback()} {
		var last time.Duration
		for range 5 {
			last = th.Failure(ip)
		}
		if last != 15*time.Second {
			t.Errorf("%v: delay after 5 failures = %v, want 15s (exempt clients are still delayed)", ip, last)
		}
		if th.Blocked(ip) {
			t.Errorf("%v: exempt client blocked", ip)
		}
	}
	if strings.Contains(logs.String(), "auth blocked") {
		t.Errorf("exempt client logged as blocked: %s", logs.String())
	}
	th.Failure(ipA)
	th.Failure(ipA)
	if !th.Blocked(ipA) {
		t.Error("non-exempt client not blocked")
	}
}

func TestThrottleDefaultExemptsLoopback(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 1})
	lo := netip.MustParseAddr("127.0.0.1")
	th.Failure(lo)
	th.Failure(ipA)
	if th.Blocked(lo) || !th.Blocked(ipA) {
		t.Errorf("Blocked(loopback)=%v Blocked(%v)=%v; want false, true", th.Blocked(lo), ipA, th.Blocked(ipA))
	}
}

func TestThrottleIPv6Prefix(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxFailures: 2})
	a := netip.MustParseAddr("2001:db8:1:2::1")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::9")
	other := netip.MustParseAddr("2001:db8:1:3::1")
	th.Failure(a)
	if got := th.Failure(b); got != 4*time.Second {
		t.Errorf("second failure from the same /64: delay %v, want 4s", got)
	}
	if !th.Blocked(a) || !th.Blocked(b) {
		t.Error("the /64 is not blocked")
	}
	if th.Blocked(other) {
		t.Error("a neighbouring /64 is blocked")
	}
	v4 := netip.MustParseAddr("::ffff:192.0.2.1")
	th.Failure(v4)
	th.Failure(ipA)
	if !th.Blocked(ipA) {
		t.Error("IPv4-mapped and plain IPv4 are not the same client")
	}
}

func TestThrottleBounded(t *testing.T) {
	clock := newFakeClock()
	th := NewThrottle(ThrottleConfig{Now: clock.Now, MaxTracked: 100, MaxFailures: 2})
	first := netip.MustParseAddr("198.51.100.1")
	th.Failure(first)
	th.Failure(first)
	if !th.Blocked(first) {
		t.Fatal("not blocked")
	}
	for i := range 1000 {
		clock.Advance(time.Millisecond)
		th.Failure(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}))
		if n := th.Len(); n > 100 {
			t.Fatalf("tracking %d clients, cap is 100", n)
		}
	}
	if th.Len() != 100 {
		t.Errorf("Len = %d, want 100", th.Len())
	}
	if th.Blocked(first) {
		t.Error("the oldest client was not evicted")
	}
	// Entries expire once their window has passed.
	clock.Advance(DefaultWindow)
	th.Blocked(ipA) // any call prunes
	if n := th.Len(); n != 0 {
		t.Errorf("Len after the window = %d, want 0", n)
	}
}

func TestThrottleCheckAndWait(t *testing.T) {
	th := NewThrottle(ThrottleConfig{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxFailures: 2})
	ctx := context.Background()
	if err := th.Check(ctx, ipA, true); err != nil {
		t.Errorf("Check(ok) = %v", err)
	}
	if err := th.Check(ctx, ipA, false); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Check(failed) = %v, want ErrAuthFailed", err)
	}
	if th.Blocked(ipA) {
		t.Error("blocked after one failure")
	}
	th.Check(ctx, ipA, false)
	if !th.Blocked(ipA) {
		t.Error("Check did not record failures")
	}

	// Wait returns early when the context ends.
	slow := NewThrottle(ThrottleConfig{BaseDelay: time.Hour, MaxDelay: time.Hour})
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- slow.Check(cctx, ipB, false) }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, context.Canceled) {
			t.Errorf("Check with a cancelled context = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait ignored the cancelled context")
	}
	if err := th.Wait(ctx, time.Millisecond); err != nil {
		t.Errorf("Wait = %v", err)
	}

	var nilT *Throttle
	if nilT.Blocked(ipA) || nilT.Failure(ipA) != 0 || nilT.Check(ctx, ipA, true) != nil {
		t.Error("a nil Throttle must allow everything")
	}
}

func TestThrottleConcurrent(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxTracked: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				ip := netip.AddrFrom4([4]byte{192, 0, byte(g), byte(i)})
				th.Failure(ip)
				th.Blocked(ip)
				th.Success(ip)
			}
		})
	}
	wg.Wait()
	if n := th.Len(); n > 50 {
		t.Errorf("Len = %d over the cap", n)
	}
}
