package push

import (
	"context"
	"io"
	"net/http"
	"testing"
)

// ctxMarker makes the test's context distinguishable from any other.
type ctxMarker struct{}

// TestNewRequestIsNewRequestWithContext: the request built from the URL
// parsed once is the one http.NewRequestWithContext builds, field by field
// that the transport reads, for endpoints with a port, a query, an empty
// port and IPv6.
func TestNewRequestIsNewRequestWithContext(t *testing.T) {
	ctx := context.WithValue(context.Background(), ctxMarker{}, 1)
	jws := []byte("eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln")
	for _, ep := range []string{
		"https://rcv.example/events",
		"https://rcv.example:8443/ssf/events?tenant=a%20b&x=1",
		"http://127.0.0.1:/events",
		"https://[::1]:9443/e",
		"https://user@rcv.example/events#frag",
	} {
		c := &Client{endpoint: ep, url: parseEndpoint(ep)}
		if c.url == nil {
			t.Fatalf("%s: not parsed", ep)
		}
		got, err := c.newRequest(ctx, jws)
		if err != nil {
			t.Fatal(err)
		}
		want, err := http.NewRequestWithContext(ctx, http.MethodPost, ep, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Method != want.Method || got.URL.String() != want.URL.String() || got.Host != want.Host ||
			got.Proto != want.Proto || got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
			got.Context() != ctx || got.ContentLength != int64(len(jws)) {
			t.Errorf("%s: got %s %s host %q %s len %d, want %s %s host %q %s", ep, got.Method, got.URL, got.Host, got.Proto, got.ContentLength,
				want.Method, want.URL, want.Host, want.Proto)
		}
		if got.URL == c.url {
			t.Errorf("%s: the parsed URL is shared with the request", ep)
		}
		for _, body := range []func() (io.ReadCloser, error){func() (io.ReadCloser, error) { return got.Body, nil }, got.GetBody, got.GetBody} {
			rc, err := body()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			if string(b) != string(jws) {
				t.Errorf("%s: body %q", ep, b)
			}
		}
	}
}
