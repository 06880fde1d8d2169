package netpolicy

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestLimiter(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 1}
	other := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}
	l := &Limiter{Max: 4, MaxPerIP: 2, Exempt: func(ip netip.Addr) bool { return ip.IsLoopback() }}
	r1, err := l.Acquire(remote)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(remote); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(remote); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("third from one IP: %v", err)
	}
	if _, err := l.Acquire(other); err != nil {
		t.Fatalf("other IP refused: %v", err)
	}
	if _, err := l.Acquire(loop); err != nil {
		t.Fatalf("loopback refused: %v", err)
	}
	if _, err := l.Acquire(loop); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("over total: %v", err)
	}
	r1()
	r1() // idempotent
	if got := l.Count(); got != 3 {
		t.Fatalf("Count = %d after release, want 3", got)
	}
	if _, err := l.Acquire(remote); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
