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
const procsPerCPU = 4

// raiseProcs sets GOMAXPROCS to procsPerCPU times the runtime's default
// (the CPUs available at start, a container's CPU limit included), unless
// the GOMAXPROCS environment variable chose the value. It returns the value
// in force. The runtime no longer follows later changes of the CPU limit.
func raiseProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	n := procsPerCPU * runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(n)
	return n
}
