package netpolicy

import (
	"net/netip"
	"testing"
)

func TestNetworks(t *testing.T) {
	n, err := ParseNetworks("10.0.0.0/8, 192.0.2.5 2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{
		"10.1.2.3": true, "192.0.2.5": true, "192.0.2.6": false, "2001:db8::9": true,
		"::ffff:10.0.0.1": true, "127.0.0.1": false,
	} {
		if got := n.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Contains(%s) = %v", ip, got)
		}
	}
	if !n.IsLocal(netip.MustParseAddr("::1")) {
		t.Error("::1 not local")
	}
	if _, err := ParseNetworks("10.0.0.0/99"); err == nil {
		t.Error("bad prefix accepted")
	}
}
