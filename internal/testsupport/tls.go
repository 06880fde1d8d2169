package testsupport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"postoffice/internal/selfsigned"
)

// certificate makes a self-signed certificate for host, localhost and the
// loopback addresses (those of the certificate of --tls-self-signed).
func certificate(t testing.TB, host string, notBefore, notAfter time.Time) *tls.Certificate {
	t.Helper()
	dns := []string{host}
	if host != "localhost" {
		dns = append(dns, "localhost")
	}
	cert, err := selfsigned.Certificate(dns, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TLSPair returns a server configuration with a fresh self-signed
// certificate for host, localhost, 127.0.0.1 and ::1, valid for the hour
// around now, and a client configuration that trusts that certificate and
// verifies it for host.
func TLSPair(t testing.TB, host string) (server, client *tls.Config) {
	t.Helper()
	cert := certificate(t, host, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{Certificates: []tls.Certificate{*cert}}, &tls.Config{RootCAs: pool, ServerName: host}
}

// CertFiles writes a fresh self-signed certificate for host (the subject's
// common name), localhost and the loopback addresses, valid from notBefore
// to notAfter, and its private key, as PEM files cert.pem and key.pem in
// dir, replacing what is there. It returns their paths: for the tests that
// pass --tls-cert and --tls-key.
func CertFiles(t testing.TB, dir, host string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	cert := certificate(t, host, notBefore, notAfter)
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
