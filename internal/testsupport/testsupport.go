// Package testsupport is what the tests of every package share: a
// line-protocol client for SMTP and POP3 transcripts with glob
// expectations (conn.go, glob.go), polling with a bound (wait.go),
// self-signed TLS for tests (tls.go), starters that run a server under test
// on loopback and shut it down when the test ends (serve.go, config.go),
// and readers of what a server under test reports: its metrics
// (metrics.go) and its log (log.go).
//
// It imports only the standard library, internal/config and
// internal/selfsigned, never a package whose tests use it (smtp, pop3,
// server, web, store): Go forbids that cycle.
package testsupport

import "time"

// Timeout bounds each read and write of a Conn, a TLS handshake, the
// shutdown of a server started here, and WaitFor. A test binary that drives
// a slower system (e2e runs the real binary, maybe built with -race) raises
// it in its TestMain, before any test runs.
var Timeout = 10 * time.Second
