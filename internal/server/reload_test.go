package server

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

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
