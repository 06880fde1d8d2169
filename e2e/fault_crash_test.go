package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// TestFaultTmpLeftoversCleanedAtStart plants the leftovers (in tmp/ and
// in the staging directory .tmp/) that
// TestCrashKeepsAcknowledgedMail can only hope a kill produced (its check
// that tmp/ is empty after a restart holds vacuously when no kill landed
// mid-delivery): a cut-off delivery of ours (the name Deliver gives, no lock
// held) is removed at start-up and never served; a young file of another
// delivery agent is left to it (the Maildir rule: only files untouched for
// 36 hours are abandoned).
func TestFaultTmpLeftoversCleanedAtStart(t *testing.T) {
	requireMaildir(t, "plants leftovers in the Maildir's tmp/")
	dir := filepath.Join(t.TempDir(), "mailbox")
	tmp := filepath.Join(dir, "user", "tmp")
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, "user", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ours := filepath.Join(tmp, "18a2b3c4d5e6f708.9f3e0a11.0000002a.eml")
	foreign := filepath.Join(tmp, "1732570000.M1P2.otherhost")
	// The staging directory: the instance directory of a dead process
	// with a cut-off delivery and a prepared empty file.
	inst := filepath.Join(dir, ".tmp", "18a2b3c4d5e6f708.9f3e0a11.00000001")
	if err := os.MkdirAll(inst, 0o700); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(inst, "18a2b3c4d5e6f708.9f3e0a11.0000002b.eml")
	pooled := filepath.Join(inst, "18a2b3c4d5e6f708.9f3e0a11.0000002c.eml")
	for _, f := range []string{ours, foreign, staged, pooled} {
		body := "Subject: half a mess"
		if f == pooled {
			body = ""
		}
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := startFault(t, dir)
	for _, f := range []string{ours, staged, pooled, inst} {
		if !testsupport.WaitUntil(10*time.Second, func() bool { _, err := os.Stat(f); return os.IsNotExist(err) }) {
			t.Fatalf("leftover %s not removed at start-up\n%s", f, p.Log())
		}
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("another agent's fresh tmp file was removed: %v", err)
	}
	c := login(t, p.Addr("pop3"), "user", "pass")
	c.Send("STAT\r\n")
	c.Expect("+OK 0 0")
}
