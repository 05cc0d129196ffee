package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"syscall"
)

// ErrNonPublicAddress is the dial error of a client built with PublicOnly
// when a connection would go to a loopback, private, link-local or
// otherwise internal address.
var ErrNonPublicAddress = errors.New("push: endpoint resolves to a non-public address")

// PublicIP reports whether ip is an address on the public internet: not
// loopback, RFC 1918 or RFC 4193 private, link-local, multicast,
// unspecified or the RFC 6598 shared space. It is the one definition both
// the SSF API's check of a receiver's endpoint_url and the push client's
// dial-time check use.
//
// An IPv6 address that carries an IPv4 address (NAT64 64:ff9b::/96, 6to4
// 2002::/16, the deprecated IPv4-compatible ::/96) is judged by that
// address, since a NAT64 gateway or 6to4 relay delivers to it: an
// IPv6-only cluster's NAT64 would otherwise carry a push into the internal
// IPv4 network. The local-use NAT64 prefix 64:ff9b:1::/48, the "this
// network" block 0.0.0.0/8, the limited broadcast address and the
// deprecated site-local fec0::/10 are internal too.
func PublicIP(ip net.IP) bool {
	if v4 := embeddedIPv4(ip); v4 != nil {
		ip = v4
	}
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || cgnat.Contains(ip) ||
		thisNetwork.Contains(ip) || ip.Equal(net.IPv4bcast) || siteLocal.Contains(ip) || nat64Local.Contains(ip))
}

var (
	// cgnat is the shared address space of RFC 6598, internal like RFC 1918.
	cgnat       = &net.IPNet{IP: net.IPv4(100, 64, 0, 0), Mask: net.CIDRMask(10, 32)}
	thisNetwork = &net.IPNet{IP: net.IPv4(0, 0, 0, 0), Mask: net.CIDRMask(8, 32)}
	siteLocal   = &net.IPNet{IP: net.ParseIP("fec0::"), Mask: net.CIDRMask(10, 128)}
	nat64Local  = &net.IPNet{IP: net.ParseIP("64:ff9b:1::"), Mask: net.CIDRMask(48, 128)}
	nat64       = &net.IPNet{IP: net.ParseIP("64:ff9b::"), Mask: net.CIDRMask(96, 128)}
	sixToFour   = &net.IPNet{IP: net.ParseIP("2002::"), Mask: net.CIDRMask(16, 128)}
)

// embeddedIPv4 is the IPv4 address an IPv6 address of the NAT64, 6to4 or
// IPv4-compatible form carries, or nil (IPv4-mapped addresses need
// nothing: net.IP's methods see through them).
func embeddedIPv4(ip net.IP) net.IP {
	if len(ip) != net.IPv6len || ip.To4() != nil {
		return nil
	}
	switch {
	case nat64.Contains(ip):
		return net.IPv4(ip[12], ip[13], ip[14], ip[15])
	case sixToFour.Contains(ip):
		return net.IPv4(ip[2], ip[3], ip[4], ip[5])
	}
	for _, b := range ip[:12] {
		if b != 0 {
			return nil
		}
	}
	return net.IPv4(ip[12], ip[13], ip[14], ip[15])
}

// publicOnlyDial wraps dial so that every connection it makes goes to a
// public address. The check runs in the dialer's Control hook, on the
// address actually connected to after name resolution, so a name that
// resolved to a public address when the endpoint was registered and to an
// internal one later (DNS rebinding) is still refused. The configured
// HTTP proxy, if the endpoint uses one, is the operator's choice and is
// dialled unchecked; the endpoint's own host is then checked when the
// request is built (see publicOnlyProxy), as the proxy resolves it.
func publicOnlyDial(d *net.Dialer, proxyHost string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	checked := *d
	checked.Control = func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip == nil || !PublicIP(ip) {
			return fmt.Errorf("%w: %s", ErrNonPublicAddress, host)
		}
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proxyHost != "" {
			if h, _, err := net.SplitHostPort(addr); err == nil && h == proxyHost {
				return d.DialContext(ctx, network, addr)
			}
		}
		return checked.DialContext(ctx, network, addr)
	}
}

// publicOnlyProxy wraps proxy for a PublicOnly client: when a request goes
// through a proxy, the dialer only sees the proxy's address, so the
// endpoint's host is resolved and checked here instead.
func publicOnlyProxy(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		u, err := proxy(req)
		if err != nil || u == nil {
			return u, err
		}
		ips, err := net.DefaultResolver.LookupIPAddr(req.Context(), req.URL.Hostname())
		if err != nil {
			return nil, err
		}
		for _, a := range ips {
			if !PublicIP(a.IP) {
				return nil, fmt.Errorf("%w: %s", ErrNonPublicAddress, req.URL.Hostname())
			}
		}
		return u, nil
	}
}

// proxyHostFor is the host of the proxy http.ProxyFromEnvironment picks
// for endpoint, or "" when it goes direct.
func proxyHostFor(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	p, err := http.ProxyFromEnvironment(&http.Request{URL: u})
	if err != nil || p == nil {
		return ""
	}
	return p.Hostname()
}
