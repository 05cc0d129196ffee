package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/relay"
)

// metric is what setrelay exports under one name.
type metric struct {
	labels    map[string]bool
	histogram bool // exposes _bucket, _sum and _count series
	summary   bool // exposes quantile, _sum and _count series
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// synthetic are the series Prometheus itself records for every scrape: the
// rules may use them to see a process that is down, which no metric of the
// process can show.
var synthetic = map[string]metric{"up": {labels: map[string]bool{}}}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	descConst  = regexp.MustCompile(`constLabels: \{([^}]*)\}`)
)

// exported returns the metrics a running relay registers, read from its
// real registry rather than from a list kept by hand: relay.Start with an
// embedded JetStream registers every collector (its own, the push
// client's, the signer's, the fleet's, the worker pool's and ops' runtime
// ones), and Describe lists
// them with their label names, even those no event has touched yet. One
// intent is delivered so that the histograms have series and Gather tells
// their type.
func exported(t *testing.T) map[string]metric {
	t.Helper()
	got := make(chan struct{}, 1)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		select {
		case got <- struct{}{}:
		default:
		}
	}))
	defer rcv.Close()
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: rcv.URL + "/events"})
	// A limited receiver makes the relay join the fleet, which registers
	// the setrelay_fleet_* metrics the dashboard shows.
	rc.Config.Receivers[0].RateLimit = 1000
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := relay.Start(ctx, rc.Config, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()
	deliverOne(t, ctx, svc.JetStream())
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the relay delivered nothing")
	}

	out := map[string]metric{}
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	for d := range ch {
		s := d.String()
		m := descName.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("cannot read the metric name from %s", s)
		}
		labels := map[string]bool{}
		for _, re := range []*regexp.Regexp{descLabels, descConst} {
			if l := re.FindStringSubmatch(s); l != nil {
				for _, part := range strings.Split(l[1], ",") {
					// constLabels are written name="value".
					name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
					if name != "" {
						labels[name] = true
					}
				}
			}
		}
		out[m[1]] = metric{labels: labels}
	}
	// The push client records its histogram when the receiver has
	// answered, and the worker counts the delivery after that, once it has
	// acked: gather until the delivery is counted.
	delivered := false
	for deadline := time.Now().Add(10 * time.Second); !delivered; {
		if time.Now().After(deadline) {
			t.Fatal("the delivery was never counted in setrelay_deliveries_total")
		}
		time.Sleep(20 * time.Millisecond)
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			m, ok := out[f.GetName()]
			if !ok {
				t.Fatalf("gathered %s, which Describe did not list", f.GetName())
			}
			m.histogram = f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_GAUGE_HISTOGRAM
			m.summary = f.GetType() == dto.MetricType_SUMMARY
			out[f.GetName()] = m
			if f.GetName() == "setrelay_deliveries_total" {
				for _, s := range f.GetMetric() {
					for _, l := range s.GetLabel() {
						if l.GetName() == "outcome" && l.GetValue() == "delivered" && s.GetCounter().GetValue() >= 1 {
							delivered = true
						}
					}
				}
			}
		}
	}
	if !out["setrelay_publish_to_delivery_seconds"].histogram {
		t.Fatal("setrelay_publish_to_delivery_seconds was not gathered as a histogram after a delivery")
	}
	return out
}

func deliverOne(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	in, err := intent.Decode([]byte(`{"id":"deploy-1","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.NewPublisher(js, intent.Options{}).Publish(ctx, in); err != nil {
		t.Fatal(err)
	}
}

// promql is Prometheus's own parser with its default options, as
// Prometheus and promtool use it for rules.
var promql = parser.NewParser(parser.Options{})

// checker parses PromQL and checks every selector against the exported
// metrics.
type checker struct{ metrics map[string]metric }

// resolve returns the labels a selected series may carry, or an error when
// name is not a series setrelay (or Prometheus, for up) produces.
func (c checker) resolve(name string) (map[string]bool, error) {
	m, ok := c.metrics[name]
	if !ok {
		m, ok = synthetic[name]
	}
	extra := []string{}
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, cut := strings.CutSuffix(name, suffix)
			if !cut {
				continue
			}
			b, found := c.metrics[base]
			switch {
			case !found:
			case b.histogram:
				m, ok = b, true
				if suffix == "_bucket" {
					extra = append(extra, "le")
				}
			case b.summary && suffix != "_bucket":
				m, ok = b, true
			}
		}
	}
	if !ok {
		return nil, fmt.Errorf("%s is not a metric setrelay exports", name)
	}
	labels := map[string]bool{"__name__": true}
	for l := range m.labels {
		labels[l] = true
	}
	if m.summary {
		labels["quantile"] = true
	}
	for _, l := range append(extra, targetLabels...) {
		labels[l] = true
	}
	return labels, nil
}

// check parses expr and returns every problem: a parse error, an unknown
// metric, a label matcher or grouping label no selected metric has.
func (c checker) check(expr string) []string {
	node, err := promql.ParseExpr(expr)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	var walk func(n parser.Node) map[string]bool
	// walk returns the labels the series under n may carry.
	walk = func(n parser.Node) map[string]bool {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if name == "" {
				problems = append(problems, fmt.Sprintf("selector %s names no metric", vs))
				return nil
			}
			labels, err := c.resolve(name)
			if err != nil {
				problems = append(problems, err.Error())
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if !labels[m.Name] {
					problems = append(problems, fmt.Sprintf("%s has no label %q", name, m.Name))
				}
			}
			return labels
		}
		under := map[string]bool{}
		for _, child := range parser.Children(n) {
			for l := range walk(child) {
				under[l] = true
			}
		}
		if agg, ok := n.(*parser.AggregateExpr); ok && !agg.Without {
			for _, l := range agg.Grouping {
				if !under[l] {
					problems = append(problems, fmt.Sprintf("%s groups by %q, which none of its metrics has", agg.Op, l))
				}
			}
		}
		return under
	}
	walk(node)
	return problems
}

type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // rows
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// grafanaVars replaces the dashboard's variables with values that make the
// query plain PromQL, as Grafana does before sending it.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${receiver}", ".*", "$receiver", ".*")

func loadRules(t *testing.T) rulesFile {
	t.Helper()
	data, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f rulesFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("prometheus/alerts.yaml: %v", err)
	}
	return f
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("grafana/setrelay.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/setrelay.json: %v", err)
	}
	return d
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

// TestQueriesNameExportedMetrics checks every PromQL expression of the
// alerting rules and the dashboard: it parses with Prometheus's own parser,
// names only metrics a running relay exports, and matches and groups only
// by labels those metrics have.
func TestQueriesNameExportedMetrics(t *testing.T) {
	c := checker{metrics: exported(t)}

	// The checker itself must be able to fail, or the passes below mean
	// nothing.
	for expr, want := range map[string]string{
		`rate(setrelay_deliveries_total[5m]`:                            "does not parse",
		`setrelay_no_such_metric_total`:                                 "not a metric setrelay exports",
		`setrelay_deliveries_total{reciever="a"}`:                       `no label "reciever"`,
		`sum by (reson) (setrelay_dead_letters_total)`:                  `groups by "reson"`,
		`rate(setrelay_deliveries_total_bucket[5m])`:                    "not a metric setrelay exports",
		`histogram_quantile(0.9, rate(setrelay_inflight_pushes[5m]))`:   "",
		`sum by (le) (rate(setrelay_push_duration_seconds_bucket[1m]))`: "",
	} {
		problems := strings.Join(c.check(expr), "; ")
		if want == "" && problems != "" || !strings.Contains(problems, want) {
			t.Errorf("check(%s) = %q, want %q", expr, problems, want)
		}
	}

	var alerts []string
	used := map[string]bool{}
	note := func(expr string) {
		node, err := promql.ParseExpr(expr)
		if err != nil {
			return
		}
		parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				used[vs.Name] = true
			}
			return nil
		})
	}
	rules := loadRules(t)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, p := range c.check(r.Expr) {
				t.Errorf("alerts.yaml %s: %s\n  %s", r.Alert, p, r.Expr)
			}
			note(r.Expr)
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
				for _, a := range []string{"summary", "description", "runbook"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("alert %s has no %s annotation", r.Alert, a)
					}
				}
				if r.Labels["severity"] == "" {
					t.Errorf("alert %s has no severity label", r.Alert)
				}
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("alerts.yaml holds no alerts")
	}
	// The README's "What to alert on" list, each item by the series it is about.
	for _, m := range []string{"setrelay_dead_letters_total", "setrelay_consumer_paused", "setrelay_consumer_pending",
		"setrelay_push_token_fetches_total", "setrelay_publish_to_delivery_seconds_bucket", "up",
		"setrelay_receiver_state", "setrelay_consumer_oldest_pending_age_seconds", "setrelay_receiver_success_ratio"} {
		if !used[m] {
			t.Errorf("no alert uses %s", m)
		}
	}

	d := loadDashboard(t)
	used = map[string]bool{}
	n := 0
	for _, p := range flatten(d.Panels) {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				continue
			}
			n++
			expr := grafanaVars.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("dashboard panel %q uses an unknown variable: %s", p.Title, tg.Expr)
				continue
			}
			for _, pr := range c.check(expr) {
				t.Errorf("dashboard panel %q: %s\n  %s", p.Title, pr, tg.Expr)
			}
			note(expr)
		}
	}
	if n == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, m := range []string{"setrelay_deliveries_total", "setrelay_retries_total", "setrelay_dead_letters_total",
		"setrelay_publish_to_delivery_seconds_bucket", "setrelay_consumer_pending",
		"setrelay_push_token_fetches_total", "setrelay_receiver_state", "setrelay_consumer_oldest_pending_age_seconds",
		"setrelay_sign_errors_total", "setrelay_sign_duration_seconds_bucket", "setrelay_receiver_probe_total"} {
		if !used[m] {
			t.Errorf("no dashboard panel shows %s", m)
		}
	}
	// Template variables: label_values(metric, label) must name a real pair.
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, q.Query)
			continue
		}
		labels, err := c.resolve(m[1])
		if err != nil || !labels[m[2]] {
			t.Errorf("variable %s: %s has no label %s (%v)", v.Name, m[1], m[2], err)
		}
	}
	names := make([]string, 0, len(c.metrics))
	for k := range c.metrics {
		if strings.HasPrefix(k, "setrelay_") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	t.Logf("%d alerts, %d dashboard queries checked against %d setrelay metrics: %s", len(alerts), n, len(names), strings.Join(names, " "))
}

// TestComposeLoadsRulesAndDashboard checks that docker-compose's metrics
// profile mounts the rules where configs/prometheus.yml loads them, and the
// dashboard where Grafana's provisioning looks.
func TestComposeLoadsRulesAndDashboard(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image    string   `yaml:"image"`
			Profiles []string `yaml:"profiles"`
			Volumes  []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	var prom struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	data, err = os.ReadFile("../configs/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &prom); err != nil {
		t.Fatal(err)
	}
	p := compose.Services["prometheus"]
	if len(prom.RuleFiles) != 1 || !slices.Contains(p.Volumes, "./deploy/prometheus/alerts.yaml:"+prom.RuleFiles[0]+":ro") {
		t.Errorf("prometheus loads rule_files %v but mounts %v", prom.RuleFiles, p.Volumes)
	}
	g, ok := compose.Services["grafana"]
	if !ok || !slices.Contains(g.Profiles, "metrics") {
		t.Fatalf("no grafana service in the metrics profile")
	}
	var provider struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	data, err = os.ReadFile("grafana/provisioning/dashboards.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &provider); err != nil || len(provider.Providers) != 1 {
		t.Fatalf("grafana/provisioning/dashboards.yaml: %v", err)
	}
	want := []string{
		"./deploy/grafana/setrelay.json:" + provider.Providers[0].Options.Path + "/setrelay.json:ro",
		"./deploy/grafana/provisioning/dashboards.yaml:/etc/grafana/provisioning/dashboards/setrelay.yaml:ro",
		"./deploy/grafana/provisioning/datasources.yaml:/etc/grafana/provisioning/datasources/setrelay.yaml:ro",
	}
	for _, w := range want {
		if !slices.Contains(g.Volumes, w) {
			t.Errorf("grafana does not mount %s (has %v)", w, g.Volumes)
		}
	}
}
