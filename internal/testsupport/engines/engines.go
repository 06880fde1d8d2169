// Package engines starts the real database and object-store servers the
// shared-store tests run against (docs/design.md, "Shared store (issue 18):
// groundwork"): throwaway PostgreSQL clusters (postgres.go) and versitygw
// S3 servers with the posix backend (s3.go), on 127.0.0.1 free ports, with
// their data in temporary directories.
//
// A test package that uses them runs its tests through Main:
//
//	func TestMain(m *testing.M) { engines.Main(m) }
//
// Postgres and S3 then hand each test a fresh database or bucket on one
// server per engine, started at the first call and stopped when the
// package's tests are done. NewPostgres and NewS3Server start a server of
// the test's own, stopped at its end, for the tests that stop and start
// it under load.
//
// A missing binary skips the test with the reason, unless
// POSTOFFICE_REQUIRE_ENGINES=1 (as .ci/run sets it): then the test fails,
// so that CI never passes by skipping.
//
// Servers are children of the test binary that die with it (a parent-death
// signal), so a test binary killed by its timeout leaves none running.
package engines

import (
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing engine from
// a skip into a failure.
const RequireEnv = "POSTOFFICE_REQUIRE_ENGINES"

// StartTimeout bounds how long a server may take to accept connections,
// and a stop to complete.
var StartTimeout = 60 * time.Second

// errMissing is an engine binary that is not installed: a skip (or, under
// RequireEnv, a failure), not a broken test.
type errMissing struct{ what string }

func (e errMissing) Error() string { return e.what }

// report fails or skips t for err: a missing engine is a skip unless
// RequireEnv is set; anything else fails.
func report(t testing.TB, err error) {
	t.Helper()
	if m, ok := err.(errMissing); ok {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s (and %s=1 forbids skipping)", m.what, RequireEnv)
		}
		t.Skip(m.what)
	}
	t.Fatal(err)
}

var shared struct {
	mu      sync.Mutex
	main    bool // Main is running the tests
	stops   []func()
	pgOnce  sync.Once
	pg      *Cluster
	pgErr   error
	s3Once  sync.Once
	s3      *S3Server
	s3Err   error
	counter int
}

// Main runs the package's tests, then stops the servers Postgres and S3
// started for them, and exits with the tests' status.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	stops := shared.stops
	shared.stops = nil
	shared.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	os.Exit(code)
}

// needMain fails t when the package does not run its tests through Main
// (the shared servers would outlive the tests otherwise).
func needMain(t testing.TB, what string) {
	t.Helper()
	shared.mu.Lock()
	ok := shared.main
	shared.mu.Unlock()
	if !ok {
		t.Fatalf("engines.%s needs the package's TestMain to call engines.Main(m)", what)
	}
}

// atExit registers stop to run when Main ends.
func atExit(stop func()) {
	shared.mu.Lock()
	shared.stops = append(shared.stops, stop)
	shared.mu.Unlock()
}

// nextName returns a fresh name with prefix, unique within the test binary:
// prefix, the process id and a counter.
func nextName(prefix string) string {
	shared.mu.Lock()
	shared.counter++
	n := shared.counter
	shared.mu.Unlock()
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), n)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
// The server that is then started on it may lose a race for it; the
// starters retry with another port when the bind fails.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n bytes of the file at path, for an error message.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
