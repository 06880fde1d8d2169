package testsupport

import (
	"testing"
	"time"
)

// pollInterval is how long WaitFor and WaitUntil sleep between two looks.
const pollInterval = 5 * time.Millisecond

// WaitFor polls cond until it holds, and fails the test if that takes
// longer than Timeout; what names the awaited condition in the failure
// ("timed out waiting for <what>").
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !WaitUntil(Timeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// WaitUntil polls cond until it holds or d has passed, and reports whether
// it held: for a test that says more than WaitFor when it gives up, or that
// goes on either way. cond is called at least once.
func WaitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
	return true
}
