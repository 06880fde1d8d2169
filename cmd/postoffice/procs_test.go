package main

import (
	"runtime"
	"testing"
)

// The server raises GOMAXPROCS to procsPerCPU times the runtime's default,
// the same on every call, and leaves a value chosen through the GOMAXPROCS
// environment variable alone.
func TestRaiseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(5)
	if got := raiseProcs(); got != 5 || runtime.GOMAXPROCS(0) != 5 {
		t.Fatalf("with GOMAXPROCS set: raiseProcs %d, GOMAXPROCS %d, want 5 unchanged", got, runtime.GOMAXPROCS(0))
	}

	t.Setenv("GOMAXPROCS", "")
	for range 2 {
		if got := raiseProcs(); got != procsPerCPU*def || runtime.GOMAXPROCS(0) != procsPerCPU*def {
			t.Fatalf("raiseProcs %d, GOMAXPROCS %d, want %d", got, runtime.GOMAXPROCS(0), procsPerCPU*def)
		}
	}
}
