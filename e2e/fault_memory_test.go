package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"postoffice/internal/testsupport"
)

// memoryRun starts a fresh server, delivers n messages of size octets each
// over n concurrent SMTP sessions, and returns the server's peak resident
// set (VmHWM) in kB. The message body is shared by all senders, so the
// test process itself holds it once.
func memoryRun(t *testing.T, n, size int) int {
	t.Helper()
	p := startFault(t, "", "--max-message-size", fmt.Sprint(size+(1<<20)))
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 2) + "\r\n"
	var body bytes.Buffer
	body.WriteString("Subject: memory\r\n\r\n")
	for body.Len()+len(line) <= size {
		body.WriteString(line)
	}
	data := append(body.Bytes(), ".\r\n"...)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", p.Addr("smtp"))
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			c := testsupport.NewConn(t, nc)
			want := []string{"220", "250", "250", "250", "354"}
			c.Write([]byte("EHLO mem\r\nMAIL FROM:<m@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n"))
			for _, w := range want {
				if r, err := c.ReadReply(); err != nil || !strings.HasPrefix(r.Last(), w) {
					errs <- fmt.Errorf("want %s: %q, %v", w, r, err)
					return
				}
			}
			if _, err := c.Write(data); err != nil {
				errs <- err
				return
			}
			if r, err := c.ReadReply(); err != nil || !strings.HasPrefix(r.Last(), "250 2.0.0") {
				errs <- fmt.Errorf("end of data: %q, %v", r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := len(mailFiles(t, p.dir, "user")); got != n {
		t.Fatalf("%d messages stored, want %d", got, n)
	}
	hwm := procStatusKB(p.cmd.Process.Pid, "VmHWM")
	if hwm < 0 {
		t.Skip("no /proc/<pid>/status: cannot read the peak RSS")
	}
	os.RemoveAll(p.dir)
	return hwm
}

// Memory bound: the server streams messages to disk, so its peak RSS with
// 20 concurrent messages does not grow with their size. The full figures
// (20 × 2 MiB against 20 × 20 MiB) run without -race; under -race (a slower
// binary with a larger heap) the sizes are 20 × 512 KiB against 20 × 4 MiB.
// See docs/memory.md.
func TestMemoryPeakRSSFlatWithMessageSize(t *testing.T) {
	const n = 20
	small, large := 2<<20, 20<<20
	if raceEnabled || testing.Short() {
		small, large = 512<<10, 4<<20
	}
	hwmSmall := memoryRun(t, n, small)
	hwmLarge := memoryRun(t, n, large)
	t.Logf("peak RSS (VmHWM): %d × %d KiB: %d kB; %d × %d KiB: %d kB (race %v)",
		n, small>>10, hwmSmall, n, large>>10, hwmLarge, raceEnabled)
	// Buffering whole messages would add n × (large - small) octets; allow
	// a quarter of that for allocator and scheduling noise.
	slack := n * (large - small) / 4 >> 10
	if hwmLarge > hwmSmall+slack {
		t.Fatalf("peak RSS grew with message size: %d kB for %d KiB messages vs %d kB for %d KiB (slack %d kB)",
			hwmLarge, large>>10, hwmSmall, small>>10, slack)
	}
}
