package server

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// TestReloadSwapsTLSCertificate: Reload (SIGHUP) makes new handshakes on
// the implicit-TLS listeners use the certificate now in the files; a broken
// file is reported and the certificate in use stays.
func TestReloadSwapsTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testsupport.CertFiles(t, dir, "old.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	s := opsServer(t, func(c *config.Config) {
		c.HTTPAddr = ""
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.SMTPSAddr, c.POP3SAddr = "127.0.0.1:0", "127.0.0.1:0"
	})
	peer := func(listener string) string {
		t.Helper()
		conn, err := tls.Dial("tcp", s.Listener(listener).Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("%s: %v", listener, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	for _, l := range []string{"smtps", "pop3s"} {
		if cn := peer(l); cn != "old.test" {
			t.Fatalf("%s before reload: certificate for %q", l, cn)
		}
	}

	testsupport.CertFiles(t, dir, "new.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if cn := peer("smtps"); cn != "old.test" {
		t.Fatalf("certificate changed before Reload: %q", cn)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"smtps", "pop3s"} {
		if cn := peer(l); cn != "new.test" {
			t.Errorf("%s after reload: certificate for %q, want new.test", l, cn)
		}
	}

	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("Reload of a broken key = %v, want an error naming %s", err, keyFile)
	}
	if cn := peer("smtps"); cn != "new.test" {
		t.Errorf("after a failed reload: certificate for %q, want new.test kept", cn)
	}
}

// readyCheck fetches /readyz and returns its status and the named check
// ("" when absent).
func readyCheck(t *testing.T, s *Server, name string) (int, string) {
	t.Helper()
	code, body := getJSON(t, s.testURL("/readyz"))
	checks, _ := body["checks"].(map[string]any)
	v, _ := checks[name].(string)
	return code, v
}

// A users file or TLS pair that failed to reload leaves the server running
// on the previous one, which is no longer what its files say: /readyz
// answers 503 and names the check ("users_file", "tls") with the error
// until a reload succeeds again. The watcher's reloads count as SIGHUP's.
func TestReadyzReportsFailedReloads(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testsupport.CertFiles(t, dir, "mx.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	goodKey, _ := os.ReadFile(keyFile)
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	usersFile := filepath.Join(dir, "users")
	good := []byte("alice:" + string(hash) + "\n")
	os.WriteFile(usersFile, good, 0o600)
	s := opsServer(t, func(c *config.Config) {
		c.UsersFile = usersFile
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.WebDisable = true
	})
	for _, name := range []string{"users_file", "tls"} {
		if code, v := readyCheck(t, s, name); code != 200 || v != "ok" {
			t.Fatalf("%s at start: %d %q", name, code, v)
		}
	}

	// A broken users file, noticed by the watcher.
	os.WriteFile(usersFile, []byte("alice:not-a-hash\n"), 0o600)
	var code int
	var v string
	if !testsupport.WaitUntil(10*time.Second, func() bool { code, v = readyCheck(t, s, "users_file"); return code == 503 }) {
		t.Fatalf("broken users file: /readyz %d %q", code, v)
	}
	if !strings.Contains(v, "reload failed") || !strings.Contains(v, usersFile+":1") {
		t.Errorf("users_file check %q does not name the failure", v)
	}
	if _, tlsOK := readyCheck(t, s, "tls"); tlsOK != "ok" {
		t.Errorf("tls check with only the users file broken: %q", tlsOK)
	}

	// A broken key as well, at SIGHUP.
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	if err := s.Reload(); err == nil {
		t.Fatal("Reload of broken files succeeded")
	}
	if code, v := readyCheck(t, s, "tls"); code != 503 || !strings.Contains(v, keyFile) {
		t.Errorf("broken TLS key: /readyz %d %q", code, v)
	}

	// Both repaired: ready again at the next reload.
	os.WriteFile(usersFile, good, 0o600)
	os.WriteFile(keyFile, goodKey, 0o600)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"users_file", "tls"} {
		if code, v := readyCheck(t, s, name); code != 200 || v != "ok" {
			t.Errorf("%s after repair: %d %q", name, code, v)
		}
	}
}

// A mailbox directory that exists but takes no new file (read-only
// mount, immutable) fails /readyz's "mailbox_dir": the store's Probe
// creates and removes a file in it. Root ignores file modes, so the test
// makes the directory immutable (chattr +i) or, failing that, a read-only
// bind mount.
func TestReadyzFailsWhenMailboxRootNotWritable(t *testing.T) {
	s := opsServer(t, func(c *config.Config) { c.WebDisable = true })
	dir := s.cfg.MailboxDir
	if code, v := readyCheck(t, s, "mailbox_dir"); code != 200 || v != "ok" {
		t.Fatalf("at start: %d %q", code, v)
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
	} else if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err == nil {
		t.Cleanup(func() { exec.Command("chattr", "-i", dir).Run() })
	} else if out2, err := exec.Command("sh", "-c", `mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"`, dir).CombinedOutput(); err == nil {
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	} else {
		t.Skipf("cannot make %s unwritable: chattr: %s; mount: %s", dir, out, out2)
	}
	code, v := readyCheck(t, s, "mailbox_dir")
	if code != 503 || v == "ok" || v == "" {
		t.Errorf("unwritable mailbox directory: /readyz %d %q", code, v)
	}
}
