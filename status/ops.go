package status

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The relay metrics status reads; see worker and push.
const (
	metricState       = "setrelay_receiver_state"
	metricDelivered   = "setrelay_receiver_delivered_last_minute"
	metricTokenExpiry = "setrelay_push_token_expiry_timestamp_seconds"
)

// opsView is what one relay's /metrics says about each receiver.
type opsView struct {
	err         error
	state       map[string][2]string // receiver -> {state, reason} of the series at 1
	delivered   map[string]int64
	tokenExpiry map[string]time.Time
}

func scrapeAll(ctx context.Context, c *http.Client, urls []string) []opsView {
	views := make([]opsView, 0, len(urls))
	for _, u := range urls {
		views = append(views, scrape(ctx, c, u))
	}
	return views
}

// scrape reads one ops endpoint's /metrics (the Prometheus text format).
func scrape(ctx context.Context, c *http.Client, base string) opsView {
	v := opsView{state: map[string][2]string{}, delivered: map[string]int64{}, tokenExpiry: map[string]time.Time{}}
	url := strings.TrimSuffix(base, "/")
	if !strings.HasSuffix(url, "/metrics") {
		url += "/metrics"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		v.err = fmt.Errorf("ops %s: %w", base, err)
		return v
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		v.err = fmt.Errorf("ops %s unreachable: %w", base, err)
		return v
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		v.err = fmt.Errorf("ops %s: /metrics answered %s", base, resp.Status)
		return v
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		v.err = fmt.Errorf("ops %s: /metrics: %w", base, err)
		return v
	}
	for _, m := range families[metricState].GetMetric() {
		if m.GetGauge().GetValue() == 1 {
			v.state[label(m, "receiver")] = [2]string{label(m, "state"), label(m, "reason")}
		}
	}
	for _, m := range families[metricDelivered].GetMetric() {
		v.delivered[label(m, "receiver")] = int64(m.GetGauge().GetValue())
	}
	for _, m := range families[metricTokenExpiry].GetMetric() {
		sec, frac := math.Modf(m.GetGauge().GetValue())
		v.tokenExpiry[label(m, "receiver")] = time.Unix(int64(sec), int64(frac*1e9))
	}
	return v
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// merge adds the relays' views to r: the worst state any reports, the sum
// of their deliveries, the shortest token lifetime.
func merge(r *Receiver, views []opsView, now time.Time) {
	for _, v := range views {
		if v.err != nil {
			continue
		}
		if st, ok := v.state[r.Name]; ok {
			r.raise(st[0], st[1], time.Time{})
		}
		if d, ok := v.delivered[r.Name]; ok {
			if r.DeliveredLastMinute == nil {
				r.DeliveredLastMinute = new(int64)
			}
			*r.DeliveredLastMinute += d
		}
		if exp, ok := v.tokenExpiry[r.Name]; ok {
			left := exp.Sub(now)
			if r.TokenLeft == nil || left < *r.TokenLeft {
				r.TokenLeft = &left
			}
		}
	}
	if r.State != StateOK && r.Reason != "" {
		r.LastError = r.Reason
	}
}
