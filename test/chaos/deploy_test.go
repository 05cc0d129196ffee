package chaos

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
)

// The deployment files must agree with each other: docker-compose config
// (run by .ci/run) only checks the compose file's syntax, not that the
// receiver expects the issuer the workers send or that Prometheus scrapes the
// port the workers serve. These tests check what an engine-less CI can.

func loadComposeWorkerConfig(t *testing.T) *config.Config {
	t.Helper()
	path := filepath.Join(moduleRoot(t), "configs", "compose", "setrelay.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RECEIVER_CLIENT_ID": "compose-dev-client", "RECEIVER_CLIENT_SECRET": "dev-only-not-a-secret",
		"SETRELAY_NATS_USER": "relay", "SETRELAY_NATS_PASSWORD": "dev-only-relay"}
	cfg, err := config.Parse(data, path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("configs/compose/setrelay.yaml does not load: %v", err)
	}
	return cfg
}

type composeFile struct {
	Services map[string]struct {
		Image       string         `yaml:"image"`
		Command     []string       `yaml:"command"`
		Environment map[string]any `yaml:"environment"`
		Volumes     []string       `yaml:"volumes"`
		Profiles    []string       `yaml:"profiles"`
		DependsOn   any            `yaml:"depends_on"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func TestComposeWorkerConfig(t *testing.T) {
	cfg := loadComposeWorkerConfig(t)
	q := cfg.Queue()
	if q.Replicas != 3 {
		t.Errorf("compose workers use %d replicas, want 3 (the cluster has 3 nodes)", q.Replicas)
	}
	for _, node := range []string{"nats-1", "nats-2", "nats-3"} {
		if !strings.Contains(q.URL, "nats://"+node+":4222") {
			t.Errorf("nats.url %q does not list %s", q.URL, node)
		}
	}
	if _, port, err := net.SplitHostPort(cfg.Ops.Listen); err != nil || port != "9464" || strings.HasPrefix(cfg.Ops.Listen, "127.") {
		t.Errorf("ops.listen %q: want 0.0.0.0:9464, reachable by Prometheus and the Dockerfile health check", cfg.Ops.Listen)
	}
	if len(cfg.Receivers) != 1 {
		t.Fatalf("want one receiver, got %d", len(cfg.Receivers))
	}
}

func TestComposeFileAgreesWithConfigs(t *testing.T) {
	cfg := loadComposeWorkerConfig(t)
	f := loadCompose(t)
	root := moduleRoot(t)

	for _, name := range []string{"nats-1", "nats-2", "nats-3", "keygen", "provision", "worker-1", "worker-2", "receiver", "producer", "prometheus"} {
		if _, ok := f.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no %s service", name)
		}
	}
	// Each NATS node keeps its own store.
	stores := map[string]bool{}
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		for _, v := range f.Services[name].Volumes {
			if strings.HasSuffix(v, ":/data") {
				stores[strings.SplitN(v, ":", 2)[0]] = true
			}
		}
	}
	if len(stores) != 3 {
		t.Errorf("NATS nodes share or lack store volumes: %v", stores)
	}
	// Every bind-mounted file exists in the repository.
	for name, s := range f.Services {
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if !strings.HasPrefix(src, "./") {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("service %s mounts %s, which does not exist", name, src)
			}
		}
	}
	for _, name := range []string{"worker-1", "worker-2"} {
		if got := f.Services[name].Command; !slices.Equal(got, []string{"run", "--config", "/etc/setrelay/config.yaml"}) {
			t.Errorf("%s command %v, want setrelay run with the mounted config", name, got)
		}
	}
	// The cluster authenticates with configs/nats/accounts.conf, and each
	// setrelay service connects as its own user of it.
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		if !slices.Contains(f.Services[name].Volumes, "./configs/nats/accounts.conf:/etc/nats/accounts.conf:ro") {
			t.Errorf("%s does not mount configs/nats/accounts.conf beside cluster.conf", name)
		}
		for _, v := range []string{"SETRELAY_NATS_RELAY_PASSWORD", "SETRELAY_NATS_PRODUCER_PASSWORD", "SETRELAY_NATS_OPERATOR_PASSWORD"} {
			if _, ok := f.Services[name].Environment[v]; !ok {
				t.Errorf("%s has no %s, which accounts.conf reads", name, v)
			}
		}
	}
	if cfg.NATS.User != "relay" {
		t.Errorf("compose workers connect as NATS user %q, want relay", cfg.NATS.User)
	}
	for name, user := range map[string]string{"worker-1": "relay", "worker-2": "relay", "provision": "relay", "producer": "producer"} {
		if got := f.Services[name].Environment["SETRELAY_NATS_USER"]; got != user {
			t.Errorf("%s connects as NATS user %v, want %s", name, got, user)
		}
	}
	if p := f.Services["prometheus"].Profiles; !slices.Contains(p, "metrics") {
		t.Errorf("prometheus should be optional (profile metrics), has profiles %v", p)
	}

	// The stand-in receiver expects what the workers send, where they send it.
	rcv := cfg.Receivers[0]
	args := f.Services["receiver"].Command
	if got := flagValue(args, "issuer"); got != cfg.Issuer {
		t.Errorf("receiver --issuer %q, workers send iss %q", got, cfg.Issuer)
	}
	if got := flagValue(args, "audience"); len(rcv.Audience) != 1 || got != rcv.Audience[0] {
		t.Errorf("receiver --audience %q, workers send aud %v", got, rcv.Audience)
	}
	_, port, err := net.SplitHostPort(flagValue(args, "listen"))
	if err != nil {
		t.Fatalf("receiver --listen: %v", err)
	}
	for _, u := range []string{rcv.Endpoint, rcv.Auth.TokenURL} {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() != "receiver" || pu.Port() != port {
			t.Errorf("%s does not point at the receiver service on port %s", u, port)
		}
	}
	if jwks := flagValue(args, "jwks-url"); !strings.HasSuffix(jwks, ":9464/jwks.json") {
		t.Errorf("receiver --jwks-url %q is not a worker's ops /jwks.json", jwks)
	}
	// The secret reaches the receiver through its environment, not argv.
	for _, a := range args {
		if strings.HasPrefix(a, "--client-secret") {
			t.Errorf("receiver gets its secret on the command line (%s...): use SETRELAY_RECEIVER_CLIENT_SECRET", a[:15])
		}
	}
	if _, ok := f.Services["receiver"].Environment["SETRELAY_RECEIVER_CLIENT_SECRET"]; !ok {
		t.Errorf("receiver has no SETRELAY_RECEIVER_CLIENT_SECRET")
	}
}

func TestPrometheusScrapesTheWorkers(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), "configs", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatalf("configs/prometheus.yml: %v", err)
	}
	_, port, _ := net.SplitHostPort(loadComposeWorkerConfig(t).Ops.Listen)
	var targets []string
	for _, sc := range p.ScrapeConfigs {
		if sc.MetricsPath != "/metrics" {
			t.Errorf("metrics_path %q, want /metrics", sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	slices.Sort(targets)
	want := []string{fmt.Sprintf("worker-1:%s", port), fmt.Sprintf("worker-2:%s", port)}
	if !slices.Equal(targets, want) {
		t.Errorf("prometheus scrapes %v, want %v", targets, want)
	}
}

// TestComposeSampleIntents checks that the producer's sample intents are
// all valid, so the compose demo shows deliveries rather than dead letters,
// and that the producer publishes that file.
func TestComposeSampleIntents(t *testing.T) {
	root := moduleRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "configs", "compose", "intents.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for n, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		in, err := intent.Decode([]byte(line), intent.Options{})
		if err != nil {
			t.Errorf("intents.ndjson line %d: %v", n+1, err)
			continue
		}
		if ids[in.ID] {
			t.Errorf("intents.ndjson line %d: duplicate id %s would be de-duplicated", n+1, in.ID)
		}
		ids[in.ID] = true
	}
	if len(ids) < 3 {
		t.Errorf("only %d sample intents", len(ids))
	}
	prod := loadCompose(t).Services["producer"]
	i := slices.Index(prod.Command, "--file")
	if len(prod.Command) == 0 || prod.Command[0] != "publish" || i < 0 || i+1 >= len(prod.Command) || prod.Command[i+1] != "/intents/intents.ndjson" {
		t.Errorf("producer command %v does not publish /intents/intents.ndjson", prod.Command)
	}
}

// TestComposeProducerGetsNoReceiverCredentials checks that the producer
// service is given only its own NATS user, not the receivers' OAuth
// credentials, and that the configuration it publishes with still loads
// with that environment alone (config.QueueOnly, what publish uses).
func TestComposeProducerGetsNoReceiverCredentials(t *testing.T) {
	prod := loadCompose(t).Services["producer"]
	for k := range prod.Environment {
		if strings.HasPrefix(k, "RECEIVER_") {
			t.Errorf("producer is given %s, a receiver credential it never uses", k)
		}
	}
	env := map[string]string{}
	for k, v := range prod.Environment {
		env[k] = fmt.Sprint(v)
	}
	path := filepath.Join(moduleRoot(t), "configs", "compose", "setrelay.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := config.Parse(data, path, lookup, config.QueueOnly())
	if err != nil {
		t.Fatalf("the producer's configuration does not load with its environment: %v", err)
	}
	if cfg.NATS.User != "producer" {
		t.Errorf("producer connects as NATS user %q", cfg.NATS.User)
	}
	if _, err := config.Parse(data, path, lookup); err == nil {
		t.Error("the full configuration loaded without the receivers' credentials: the check above proves nothing")
	}
}

// TestComposeKeygenMakesTheWorkersKey checks that the keygen service writes,
// with setrelay's own image, the key file and algorithm the workers load,
// into the volume they mount, and that a restart keeps the key.
func TestComposeKeygenMakesTheWorkersKey(t *testing.T) {
	cfg := loadComposeWorkerConfig(t)
	f := loadCompose(t)
	if len(cfg.Keys) != 1 {
		t.Fatalf("compose workers have %d keys, want 1", len(cfg.Keys))
	}
	key := cfg.Keys[0]
	kg := f.Services["keygen"]
	if kg.Image != f.Services["worker-1"].Image {
		t.Errorf("keygen runs image %q, the workers %q: it must be setrelay's own, which runs as the workers' user", kg.Image, f.Services["worker-1"].Image)
	}
	arg := func(name string) string {
		i := slices.Index(kg.Command, "--"+name)
		if i < 0 || i+1 >= len(kg.Command) {
			return ""
		}
		return kg.Command[i+1]
	}
	if !slices.Equal(kg.Command[:min(2, len(kg.Command))], []string{"keys", "generate"}) {
		t.Fatalf("keygen command %v is not 'keys generate'", kg.Command)
	}
	if got := arg("out"); got != key.File {
		t.Errorf("keygen writes %q, workers load %q", got, key.File)
	}
	if got := arg("alg"); got != key.Alg {
		t.Errorf("keygen makes a %s key, workers sign with %s", got, key.Alg)
	}
	if !slices.Contains(kg.Command, "--if-missing") {
		t.Error("keygen runs on every start without --if-missing: a restart would fail or replace the key")
	}
	// The key's directory must be the same volume in keygen (writable) and
	// in the workers (read-only is enough).
	volumeAt := func(vols []string, dir string) (name string, readOnly bool) {
		for _, v := range vols {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == dir {
				return parts[0], len(parts) == 3 && parts[2] == "ro"
			}
		}
		return "", false
	}
	dir := filepath.Dir(key.File)
	kgVol, kgRO := volumeAt(kg.Volumes, dir)
	if kgVol == "" || kgRO {
		t.Errorf("keygen does not mount a writable volume at %s: %v", dir, kg.Volumes)
	}
	for _, name := range []string{"worker-1", "worker-2"} {
		if v, _ := volumeAt(f.Services[name].Volumes, dir); v != kgVol {
			t.Errorf("%s mounts %q at %s, keygen writes to %q", name, v, dir, kgVol)
		}
	}
	if _, ok := f.Volumes[kgVol]; !ok {
		t.Errorf("the key volume %q is not a named volume", kgVol)
	}
}
