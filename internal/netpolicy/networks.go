package netpolicy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// AddrIP returns the IP of a TCP address (unmapped from IPv4-in-IPv6), or
// the zero Addr when addr carries none.
func AddrIP(addr net.Addr) netip.Addr {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Networks is a list of IP prefixes, such as --trusted-networks.
type Networks []netip.Prefix

// ParseNetworks parses a comma- or space-separated list of CIDR prefixes or
// single addresses.
func ParseNetworks(s string) (Networks, error) {
	var n Networks
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			n = append(n, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR prefix", f)
		}
		n = append(n, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return n, nil
}

// Contains reports whether ip is in one of the prefixes.
func (n Networks) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range n {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// IsLocal reports whether ip is loopback or in n: the clients exempt from
// per-IP caps (DESIGN.md, "Limits and who is exempt").
func (n Networks) IsLocal(ip netip.Addr) bool {
	return ip.IsLoopback() || n.Contains(ip)
}
