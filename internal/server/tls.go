package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"postoffice/internal/selfsigned"
)

// certSource holds the current certificate; Reload swaps it atomically so
// that new handshakes use the new one and live sessions are untouched.
type certSource struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	lastErr           atomic.Pointer[error] // the failure of the last Reload; nil after a success
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
		err = fmt.Errorf("load TLS key pair %s, %s: %w", cs.certFile, cs.keyFile, err)
		cs.lastErr.Store(&err)
		return err
	}
	cs.cert.Store(&c)
	cs.lastErr.Store(nil)
	return nil
}

// Err returns the error of the last Reload while the previous certificate
// stays in use because of it, or nil.
func (cs *certSource) Err() error {
	if p := cs.lastErr.Load(); p != nil {
		return *p
	}
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
	now := time.Now()
	return selfsigned.Certificate([]string{host, "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		now.Add(-time.Hour), now.Add(365*24*time.Hour))
}
