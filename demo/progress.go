package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// counts are the worker's own counters, read from its Prometheus registry:
// the demo reports what the relay's metrics say, as an operator would see
// them on /metrics.
type counts struct {
	delivered    int
	deadLettered int
	retries      map[string]int // by reason
}

func (c counts) retried() int {
	n := 0
	for _, v := range c.retries {
		n += v
	}
	return n
}

func readCounts(g prometheus.Gatherer) (counts, error) {
	c := counts{retries: map[string]int{}}
	mfs, err := g.Gather()
	if err != nil {
		return c, fmt.Errorf("demo: read metrics: %w", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["receiver"] != ReceiverName {
				continue
			}
			v := int(m.GetCounter().GetValue())
			switch mf.GetName() {
			case "setrelay_deliveries_total":
				switch labels["outcome"] {
				case "delivered":
					c.delivered += v
				case "dead_lettered":
					c.deadLettered += v
				}
			case "setrelay_retries_total":
				c.retries[labels["reason"]] += v
			}
		}
	}
	return c, nil
}

// wait shows progress until every published intent has settled (delivered
// or dead-lettered), ctx is cancelled or the timeout passes. A timeout is
// not an error here: the summary then names what is missing.
func (e *env) wait(ctx context.Context, opts Options, p *published, out io.Writer) error {
	deadline := time.NewTimer(opts.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	lastPrint := time.Time{}
	for {
		c, err := readCounts(e.reg)
		if err != nil {
			return err
		}
		settled := c.delivered+c.deadLettered >= p.total()
		line := fmt.Sprintf("delivered %d/%d  dead-lettered %d/%d  retried %d  %.1fs",
			c.delivered, len(p.good), c.deadLettered, len(p.bad), c.retried(), time.Since(p.start).Seconds())
		switch {
		case opts.TTY:
			fmt.Fprintf(out, "\r%-72s", line)
			if settled {
				fmt.Fprintln(out)
			}
		case settled || time.Since(lastPrint) >= time.Second:
			// Plain lines for logs and pipes: at most one a second, only
			// when something moved, and always the final one.
			key := fmt.Sprint(c.delivered, c.deadLettered, c.retried())
			if key != last || settled {
				fmt.Fprintln(out, line)
				last = key
			}
			lastPrint = time.Now()
		}
		if settled {
			return nil
		}
		select {
		case <-ctx.Done():
			if opts.TTY {
				fmt.Fprintln(out)
			}
			return fmt.Errorf("demo: %w", ctx.Err())
		case <-deadline.C:
			if opts.TTY {
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "timed out after %s waiting for intents to settle\n", opts.Timeout)
			return nil
		case <-tick.C:
		}
	}
}

// capture keeps the compact form of one accepted SET (the one with jti),
// so that the demo can show exactly what went over the wire.
type capture struct {
	jti string
	mu  sync.Mutex
	jws string
}

func (c *capture) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jws
}

// wrap records the request body of /events when the receiver accepted it
// (202) and its jti is the wanted one.
func (c *capture) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" || c.get() != "" || r.Body == nil {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status != http.StatusAccepted {
			return
		}
		if _, claims, err := decodeJWS(string(body)); err == nil {
			var cl struct {
				JTI string `json:"jti"`
			}
			if json.Unmarshal(claims, &cl) == nil && cl.JTI == c.jti {
				c.mu.Lock()
				c.jws = string(body)
				c.mu.Unlock()
			}
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
