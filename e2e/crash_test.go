package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// crashClient delivers messages on one connection until the server dies,
// recording each message that got a 250.
func crashClient(t *testing.T, addr string, worker int, acked map[string]string, mu *sync.Mutex, stop <-chan struct{}) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer nc.Close()
	c := testsupport.NewConn(t, nc)
	reply := func() (string, bool) {
		r, err := c.ReadReply()
		return r.Last(), err == nil
	}
	if _, ok := reply(); !ok {
		return
	}
	fmt.Fprintf(c, "EHLO w%d\r\n", worker)
	if _, ok := reply(); !ok {
		return
	}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		var body strings.Builder
		fmt.Fprintf(&body, "Subject: crash %d/%d\r\n\r\n", worker, n)
		lines := rand.IntN(3000) + 1
		for i := 0; i < lines; i++ {
			fmt.Fprintf(&body, "line %d of message %d/%d .................................\r\n", i, worker, n)
		}
		body.WriteString("END-OF-MESSAGE\r\n")
		fmt.Fprintf(c, "MAIL FROM:<w%d@test>\r\nRCPT TO:<x@test>\r\nDATA\r\n", worker)
		for i := 0; i < 3; i++ {
			if _, ok := reply(); !ok {
				return
			}
		}
		if _, err := c.Write([]byte(body.String() + ".\r\n")); err != nil {
			return
		}
		l, ok := reply()
		if !ok {
			return
		}
		if m := queuedRe.FindStringSubmatch(l); m != nil {
			mu.Lock()
			acked[m[1]] = body.String()
			mu.Unlock()
		}
	}
}

// SIGKILL during concurrent deliveries: after a restart every message that
// got a 250 is present and complete, no file in new/ or cur/ is partial,
// and tmp/ leftovers are removed.
func TestCrashKeepsAcknowledgedMail(t *testing.T) {
	requireMaildir(t, "inspects the Maildir's tmp/ after a crash")
	dir := filepath.Join(t.TempDir(), "mailbox")
	acked := map[string]string{}
	var mu sync.Mutex
	for round := 0; round < 3; round++ {
		p := start(t, dir)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				crashClient(t, p.Addr("smtp"), round*100+w, acked, &mu, stop)
			}()
		}
		// Let deliveries get going, then kill in the middle of them.
		testsupport.WaitUntil(20*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= (round+1)*40
		})
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		close(stop)
		wg.Wait()
	}
	if len(acked) < 120 {
		t.Fatalf("only %d messages acknowledged; the test did not exercise the crash", len(acked))
	}

	// Every file visible must be whole; every acknowledged message present.
	files := mailFiles(t, dir, "user")
	byID := map[string]string{}
	for _, f := range files {
		eml, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, msg := stripTrace(t, eml)
		if !strings.HasSuffix(msg, "END-OF-MESSAGE\r\n") {
			t.Errorf("partial message visible: %s (%d bytes)", f, len(eml))
		}
		byID[strings.TrimSuffix(filepath.Base(f), ".eml")] = msg
	}
	for id, body := range acked {
		got, ok := byID[id]
		if !ok {
			t.Errorf("acknowledged message %s lost", id)
		} else if got != body {
			t.Errorf("acknowledged message %s differs", id)
		}
	}
	// A fresh start cleans tmp/ and the staging directory .tmp/ of the
	// deliveries cut off by the kills and of the killed processes' prepared
	// (empty) tmp files. The new process delivers nothing, so it prepares
	// none of its own.
	if left, _ := stagedFiles(dir); len(left) == 0 {
		t.Fatal("no staged file left by the kills: deliveries did not go through .tmp/")
	}
	p := start(t, dir)
	var ents []os.DirEntry
	var staged, dirs []string
	if !testsupport.WaitUntil(10*time.Second, func() bool {
		ents, _ = os.ReadDir(filepath.Join(dir, "user", "tmp"))
		staged, dirs = stagedFiles(dir)
		return len(ents) == 0 && len(staged) == 0 && len(dirs) == 0
	}) {
		t.Fatalf("tmp/ and .tmp/ not cleaned at start-up: %d, %d files and %d directories left\n%s", len(ents), len(staged), len(dirs), p.Log())
	}
	t.Logf("%d acknowledged, %d stored after 3 kills", len(acked), len(files))
}
