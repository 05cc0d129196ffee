package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthcheck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /down", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nats: connection is closed\nsecond line", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/healthz", http.StatusFound)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close() // nothing listens there any more

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"healthy", []string{"--url", srv.URL + "/healthz"}, 0, "healthy: " + srv.URL + "/healthz 200 OK", ""},
		{"503 with its body on one line", []string{"--url", srv.URL + "/down"}, 1, "", "503 Service Unavailable: nats: connection is closed; second line\n"},
		{"redirect not followed", []string{"--url", srv.URL + "/moved"}, 1, "", "302 Found"},
		{"not found", []string{"--url", srv.URL + "/nope"}, 1, "", "404 Not Found"},
		{"timeout", []string{"--url", srv.URL + "/slow", "--timeout", "200ms"}, 1, "", "no answer within 200ms"},
		{"refused", []string{"--url", refused.URL + "/healthz"}, 1, "", "connection refused"},
		{"not http", []string{"--url", "ftp://127.0.0.1/healthz"}, 1, "", "is not an http(s) URL"},
		{"zero timeout", []string{"--url", srv.URL + "/healthz", "--timeout", "0s"}, 1, "", "--timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, stderr := runCLI(t, "", append([]string{"healthcheck"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stdout %q, stderr %q; want them to contain %q, %q", stdout, stderr, tt.stdout, tt.stderr)
			}
			if tt.code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("reason is not one line: %q", stderr)
			}
			if strings.Contains(stdout+stderr, `\n`) {
				t.Errorf("output holds a literal \\n: %q", stdout+stderr)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s: the timeout does not bound the check", d)
			}
		})
	}
}

// The default URL is the ops server's default listen address, which is what
// the Dockerfile's HEALTHCHECK names.
func TestHealthcheckDefaultURL(t *testing.T) {
	cmd := newHealthcheckCmd()
	if got := cmd.Flags().Lookup("url").DefValue; got != "http://127.0.0.1:9464/healthz" || !strings.Contains(got, "127.0.0.1:9464") {
		t.Errorf("--url default %q", got)
	}
	if got := cmd.Flags().Lookup("timeout").DefValue; got != "2s" {
		t.Errorf("--timeout default %q", got)
	}
}
