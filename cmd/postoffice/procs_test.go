package main

import (
	"runtime"
	"testing"
)

// The server raises GOMAXPROCS to procsPerCPU times the default, and
// leaves a value chosen through the GOMAXPROCS environment variable alone.
func TestRaiseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	t.Setenv("GOMAXPROCS", "3")
	if got := raiseProcs(); got != before || runtime.GOMAXPROCS(0) != before {
		t.Fatalf("with GOMAXPROCS set: raiseProcs %d, GOMAXPROCS %d, want %d unchanged", got, runtime.GOMAXPROCS(0), before)
	}

	t.Setenv("GOMAXPROCS", "")
	if got := raiseProcs(); got != procsPerCPU*before || runtime.GOMAXPROCS(0) != procsPerCPU*before {
		t.Fatalf("raiseProcs %d, GOMAXPROCS %d, want %d", got, runtime.GOMAXPROCS(0), procsPerCPU*before)
	}
}
