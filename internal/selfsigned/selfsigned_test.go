package selfsigned

import (
	"crypto/ecdsa"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestCertificate(t *testing.T) {
	now := time.Now()
	c, err := Certificate([]string{"mx.test", "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("key %T, want ECDSA", c.PrivateKey)
	}
	if leaf.Subject.CommonName != "mx.test" || leaf.IsCA || leaf.NotAfter.Before(now.Add(23*time.Hour)) {
		t.Fatalf("subject %v, CA %v, not after %v", leaf.Subject, leaf.IsCA, leaf.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"mx.test", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.test", Roots: roots}); err == nil {
		t.Error("verified for a name it does not have")
	}
	if _, err := Certificate(nil, nil, now, now.Add(time.Hour)); err == nil {
		t.Error("a certificate without a name")
	}
}
