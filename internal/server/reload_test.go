package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/config"
)

// writeTestCert writes a self-signed certificate for cn and its key to
// certFile and keyFile, replacing what is there.
func writeTestCert(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadSwapsTLSCertificate: Reload (SIGHUP) makes new handshakes on
// the implicit-TLS listeners use the certificate now in the files; a broken
// file is reported and the certificate in use stays.
func TestReloadSwapsTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeTestCert(t, certFile, keyFile, "old.test")
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

	writeTestCert(t, certFile, keyFile, "new.test")
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
