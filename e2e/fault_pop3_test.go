package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGKILL right after a POP3 QUIT that commits many DELEs: afterwards each
// deleted message is either still there byte for byte or gone, never half,
// every message not deleted is there, and the next login (in a restarted
// server) takes the lock and lists exactly the files on disk. Rounds kill
// after different delays to land before, during and after the commit.
func TestFaultKillDuringQuitCommit(t *testing.T) {
	const total, dele = 300, 200
	dir := t.TempDir() + "/mailbox"
	p := startFault(t, dir)
	for round, delay := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond} {
		// Top the maildrop up to total messages.
		if have := len(mailFiles(t, dir, "user")); have < total {
			deliverMany(t, p.Addr("smtp"), total-have, 8, func(i int) string {
				return fmt.Sprintf("Subject: quit-kill %d/%d\r\n\r\n%s\r\nEND\r\n", round, i, strings.Repeat("body line\r\n", 20+i%50))
			})
		}
		before := readMailFiles(t, dir, "user")

		c := login(t, p.Addr("pop3"), "user", "pass")
		c.Send("UIDL\r\n")
		c.Expect("+OK*")
		uidOf := map[int]string{}
		for _, l := range strings.Split(strings.TrimSuffix(c.MultilineText(), "\r\n"), "\r\n") {
			var n int
			var uid string
			if _, err := fmt.Sscanf(l, "%d %s", &n, &uid); err != nil {
				t.Fatalf("UIDL line %q: %v", l, err)
			}
			uidOf[n] = uid
		}
		if len(uidOf) != len(before) {
			t.Fatalf("UIDL lists %d messages, %d files on disk", len(uidOf), len(before))
		}
		var cmds strings.Builder
		deleted := map[string]bool{}
		for n := 1; n <= dele; n++ {
			fmt.Fprintf(&cmds, "DELE %d\r\n", n)
			deleted[uidOf[n]+".eml"] = true
		}
		c.Send(cmds.String())
		for n := 1; n <= dele; n++ {
			c.Expect("+OK*")
		}
		c.Send("QUIT\r\n")
		time.Sleep(delay)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited

		after := readMailFiles(t, dir, "user")
		gone := 0
		for name, old := range before {
			now, ok := after[name]
			switch {
			case !ok && deleted[name]:
				gone++
			case !ok:
				t.Errorf("round %d: message %s was not deleted but is gone", round, name)
			case !bytes.Equal(now, old):
				t.Errorf("round %d: message %s changed: %d bytes, was %d", round, name, len(now), len(old))
			}
		}
		for name := range after {
			if _, ok := before[name]; !ok {
				t.Errorf("round %d: file %s appeared", round, name)
			}
		}
		t.Logf("round %d (kill %v after QUIT): %d of %d deleted messages removed", round, delay, gone, dele)

		// The lock died with the process: a new server lets the user in and
		// lists exactly what is on disk.
		p = startFault(t, dir)
		c = login(t, p.Addr("pop3"), "user", "pass")
		c.Send("STAT\r\n")
		c.Expect(fmt.Sprintf("+OK %d *", len(after)))
		c.Send("QUIT\r\n")
		c.Expect("+OK*")
	}
}
