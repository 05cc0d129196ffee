package push

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"testing"
)

// A PublicOnly client checks the address it connects to, after name
// resolution, so an endpoint whose name resolves to an internal address at
// push time (here "localhost", as a rebinding name would) is refused on
// every connection and blocks the receiver, while the same endpoint
// without PublicOnly is delivered to.
func TestPublicOnlyRefusesInternalAddressesAtDialTime(t *testing.T) {
	rc := newReceiver(t, false, nil)
	u, _ := url.Parse(rc.URL)
	for _, endpoint := range []string{rc.URL, "http://localhost:" + u.Port() + "/events"} {
		c, _ := newTestClient(t, Config{Name: "r", Endpoint: endpoint, InsecureHTTP: true, PublicOnly: true})
		r := c.Push(context.Background(), []byte(testJWS))
		if r.Outcome != Blocked || r.Reason != ReasonNonPublicAddress || !errors.Is(r.Cause, ErrNonPublicAddress) {
			t.Fatalf("%s: result %+v", endpoint, r)
		}
	}
	if rc.hits.Load() != 0 {
		t.Fatalf("the receiver on loopback got %d requests from a PublicOnly client", rc.hits.Load())
	}
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true})
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("without PublicOnly: %+v", r)
	}
}

// Through a proxy the dialer only sees the proxy, so the endpoint's own
// host is resolved and checked when the proxy is chosen.
func TestPublicOnlyChecksTheEndpointBehindAProxy(t *testing.T) {
	proxyURL, _ := url.Parse("http://proxy.invalid:3128")
	proxy := publicOnlyProxy(func(*http.Request) (*url.URL, error) { return proxyURL, nil })
	for _, target := range []string{"http://127.0.0.1/x", "http://10.1.2.3/x", "http://localhost/x", "http://[::1]/x"} {
		req, _ := http.NewRequest(http.MethodPost, target, nil)
		if _, err := proxy(req); !errors.Is(err, ErrNonPublicAddress) {
			t.Errorf("%s through a proxy: err %v, want ErrNonPublicAddress", target, err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://192.0.2.10/x", nil) // TEST-NET-1: public by PublicIP's rules
	if got, err := proxy(req); err != nil || got != proxyURL {
		t.Fatalf("public target through a proxy: %v, %v", got, err)
	}
	direct := publicOnlyProxy(func(*http.Request) (*url.URL, error) { return nil, nil })
	if got, err := direct(req); got != nil || err != nil {
		t.Fatalf("no proxy: %v, %v", got, err)
	}
}

func TestPublicIP(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": false, "::1": false, "10.0.0.1": false, "172.16.5.4": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "100.64.0.1": false, "0.0.0.0": false,
		"224.0.0.1": false, "8.8.8.8": true, "2606:4700:4700::1111": true, "100.128.0.1": true,
	} {
		if got := PublicIP(net.ParseIP(addr)); got != want {
			t.Errorf("PublicIP(%s) = %v, want %v", addr, got, want)
		}
	}
}
