package push

import (
	"net"
	"testing"
)

// IPv6 addresses that carry an IPv4 address reach it: an IPv4-mapped one
// directly, a NAT64 one (64:ff9b::/96, and 64:ff9b:1::/48 for local use)
// through the network's NAT64 gateway, which IPv6-only clusters have and
// which translates into the internal IPv4 network; a 6to4 one
// (2002::/16) through a relay. A receiver endpoint resolving to one that
// embeds an internal address is as internal as that address. So are the
// IPv4 "this network" block 0.0.0.0/8, the limited broadcast address and
// deprecated IPv6 site-local addresses (fec0::/10), still routed inside
// some networks.
func TestPublicIPEmbeddedAndReserved(t *testing.T) {
	for addr, want := range map[string]bool{
		"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false,
		"64:ff9b::7f00:1": false, "64:ff9b::a00:1": false, "64:ff9b::a9fe:a9fe": false, "64:ff9b:1::a00:1": false,
		"2002:7f00:1::1": false, "2002:a00:1::": false, "2002:c0a8:101::1": false,
		"::127.0.0.1": false, "::10.0.0.1": false,
		"0.1.2.3": false, "255.255.255.255": false, "fec0::1": false,
		// Embedding a public address is as public as it.
		"64:ff9b::808:808": true, "2002:808:808::1": true, "::ffff:8.8.8.8": true,
	} {
		if got := PublicIP(net.ParseIP(addr)); got != want {
			t.Errorf("PublicIP(%s) = %v, want %v", addr, got, want)
		}
	}
}
