package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/push"
)

// Defaults of 'setrelay healthcheck': the ops server's liveness endpoint on
// its default port, and a bound well inside Docker's usual 3s check timeout.
const (
	defaultHealthURL     = "http://" + config.DefaultOpsListen + "/healthz"
	defaultHealthTimeout = 2 * time.Second
	// healthBodyExcerpt bounds how much of a failing answer is quoted.
	healthBodyExcerpt = 120
)

func newHealthcheckCmd() *cobra.Command {
	var (
		target  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "healthcheck [--url URL] [--timeout D]",
		Short: "GET a health endpoint; exit 0 on 2xx, 1 otherwise (for container health checks)",
		Long: `Send one GET to URL and exit 0 if it answers 2xx within the timeout, or 1
with a one-line reason otherwise (a refused connection, a timeout, any other
status; redirects are not followed). Container images without curl or wget
(distroless) use it as their HEALTHCHECK against setrelay's own ops server
(/healthz) or a development receiver's /healthz.

Exit status 1 for every failure, including a malformed --url, because Docker
reserves status 2 in health checks.`,
		Example: `  setrelay healthcheck
  setrelay healthcheck --url http://127.0.0.1:8080/healthz --timeout 1s`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			status, err := healthcheck(cmd.Context(), target, timeout)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "healthy: %s %s\n", target, status)
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "url", defaultHealthURL, "health endpoint to GET (http or https)")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultHealthTimeout, "bound on the whole request, including the answer")
	return cmd
}

// healthcheck GETs target once and returns the 2xx status line, or an error
// saying in one line why the endpoint is not healthy.
func healthcheck(ctx context.Context, target string, timeout time.Duration) (string, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("unhealthy: --url %q is not an http(s) URL", target)
	}
	if timeout <= 0 {
		return "", fmt.Errorf("unhealthy: --timeout must be positive (got %s)", timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", fmt.Errorf("unhealthy: %w", err)
	}
	client := &http.Client{
		// The check is of this container's own endpoint: no proxy from
		// the environment, and no connection kept for a next time.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// A redirect means something else answers on that address.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("unhealthy: GET %s: no answer within %s", target, timeout)
		}
		return "", fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, healthBodyExcerpt))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("unhealthy: GET %s: %s", target, resp.Status)
		// The reason must stay one line, readable in `docker inspect`: the
		// body's lines (http.Error ends every body with one) are joined
		// with "; " rather than escaped into a literal \n.
		lines := strings.FieldsFunc(string(body), func(r rune) bool { return r == '\n' || r == '\r' })
		for i := range lines {
			lines[i] = strings.TrimSpace(lines[i])
		}
		lines = slices.DeleteFunc(lines, func(l string) bool { return l == "" })
		if ex := push.Excerpt([]byte(strings.Join(lines, "; ")), healthBodyExcerpt); ex != "" {
			msg += ": " + ex
		}
		return "", errors.New(msg)
	}
	return resp.Status, nil
}
