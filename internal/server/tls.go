package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"time"
)

// certSource holds the current certificate; Reload swaps it atomically so
// that new handshakes use the new one and live sessions are untouched.
type certSource struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func newCertSource(certFile, keyFile, selfSignedHost string) (*certSource, error) {
	cs := &certSource{certFile: certFile, keyFile: keyFile}
	if certFile == "" {
		c, err := selfSigned(selfSignedHost)
		if err != nil {
			return nil, err
		}
		cs.cert.Store(c)
		return cs, nil
	}
	return cs, cs.Reload()
}

// Reload reads the certificate files again; on error the old certificate
// stays in use.
func (cs *certSource) Reload() error {
	if cs.certFile == "" {
		return nil
	}
	c, err := tls.LoadX509KeyPair(cs.certFile, cs.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair %s, %s: %w", cs.certFile, cs.keyFile, err)
	}
	cs.cert.Store(&c)
	return nil
}

func (cs *certSource) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cs.cert.Load(), nil
		},
	}
}

// selfSigned makes an in-memory ECDSA certificate for host, valid for a
// year, for development (--tls-self-signed).
func selfSigned(host string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"Postoffice self-signed"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{host, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
