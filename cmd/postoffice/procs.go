package main

import (
	"os"
	"runtime"
)

// procsPerCPU is how many Go schedulers (GOMAXPROCS) the server runs per
// CPU available to it. A delivery spends most of its time in fdatasync and
// fsync, system calls that keep their goroutine's P (the runtime's right to
// run Go code) until the runtime's monitor takes it back, 20 µs to 10 ms
// later. With one P per CPU, a client command that arrives meanwhile waits
// for that even though the CPU itself is idle. Measured on 2 CPUs at 8
// connections (docs/benchmarks.md): GOMAXPROCS 8 instead of 2 cut the mean
// time a runnable goroutine waits for a P from 113-137 µs to 68-71 µs and
// raised throughput by about 10 %, at the same CPU time per message.
//
// The price: the garbage collector's background marking takes a quarter of
// the Ps, so with four per CPU a mark phase can occupy every CPU while it
// lasts. The server allocates little (a 2 KB delivery 3.3 KB; 6 cycles in
// 3,200 messages), so those phases are rare and short.
const procsPerCPU = 4

// raiseProcs sets GOMAXPROCS to procsPerCPU times the runtime's default
// (the CPUs available, a container's CPU limit included), unless the
// GOMAXPROCS environment variable is set, and returns the value in force.
// Calling it again gives the same value. The runtime no longer follows later
// changes of the CPU limit.
func raiseProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	runtime.SetDefaultGOMAXPROCS()
	n := procsPerCPU * runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(n)
	return n
}
