package testsupport

import (
	"context"
	"errors"
	"net"
	"testing"
)

// Listen returns a TCP listener on a free loopback port, closed when the
// test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Engine is a protocol engine as its tests run it: smtp.Server and
// pop3.Server.
type Engine interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Serve serves srv on a fresh loopback listener, as ServeOn does, and
// returns its address.
func Serve(t testing.TB, srv Engine, closed error) string {
	t.Helper()
	return ServeOn(t, srv, Listen(t), closed)
}

// ServeOn serves srv on l in a goroutine and returns l's address. When the
// test ends it shuts srv down, allowing it Timeout, and checks that
// Shutdown returned nil and that Serve returned closed (the engine's
// ErrServerClosed).
func ServeOn(t testing.TB, srv Engine, l net.Listener, closed error) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, closed) {
			t.Errorf("Serve returned %v, want %v", err, closed)
		}
	})
	return l.Addr().String()
}

// Starter is a whole server: Start opens its listeners and serves them,
// Shutdown ends it (server.Server).
type Starter interface {
	Start() error
	Shutdown(context.Context) error
}

// Start starts srv, failing the test if it cannot, and shuts it down when
// the test ends, allowing it Timeout. That Shutdown's error is not checked:
// a test may have shut srv down itself.
func Start(t testing.TB, srv Starter) {
	t.Helper()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		srv.Shutdown(ctx)
	})
}
