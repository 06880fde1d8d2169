// Package selfsigned makes self-signed TLS certificates: the one a server
// started with --tls-self-signed presents (development only), and those of
// the tests.
package selfsigned

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Organization is the subject organisation of every certificate made here,
// so that a client's warning says what it is looking at.
const Organization = "Postoffice self-signed"

// Certificate makes a fresh ECDSA P-256 key and a certificate for it,
// signed by itself, for the DNS names and IP addresses given, valid from
// notBefore to notAfter. The subject's common name is dnsNames[0]. The
// certificate is for server authentication only (it is not a CA); a client
// trusts it by having it in its root pool. The returned certificate has its
// Leaf parsed.
func Certificate(dnsNames []string, ips []net.IP, notBefore, notAfter time.Time) (*tls.Certificate, error) {
	if len(dnsNames) == 0 {
		return nil, errors.New("self-signed certificate: no DNS name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: dnsNames[0], Organization: []string{Organization}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
