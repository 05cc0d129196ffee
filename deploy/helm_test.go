package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/queue"
)

const (
	chartDir    = "helm/setrelay"
	fullValues  = "helm/setrelay/ci/full-values.yaml"
	releaseName = "relay"
	namespace   = "identity"
)

// helmBinary finds the helm CLI that .ci/run builds: $SETRELAY_HELM (CI
// exports it, and then a missing binary fails the test), else helm on PATH
// or in the tools cache .ci/run installs into.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SETRELAY_HELM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SETRELAY_HELM=%s: %v (bash .ci/run builds it)", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "setrelay-tools", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no helm CLI: run `bash .ci/run` (it builds helm.sh/helm/v4/cmd/helm and sets SETRELAY_HELM), or put helm on PATH")
	return ""
}

// offlineChart copies the chart without its dependencies block: Helm will
// not render a chart whose declared dependencies are missing from charts/,
// whatever their condition, and the NATS chart cannot be downloaded here.
// With nats.enabled the dependency adds the NATS cluster's own manifests,
// which are the NATS chart's to test; everything of setrelay's renders the
// same.
func offlineChart(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "setrelay")
	err := filepath.WalkDir(chartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == "Chart.yaml" {
			i := bytes.Index(data, []byte("\ndependencies:"))
			if i < 0 {
				return errors.New("Chart.yaml has no dependencies block (the NATS chart); update this test")
			}
			data = data[:i+1]
		}
		return os.WriteFile(out, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// render runs helm template and returns its manifests, or helm's error.
func render(t *testing.T, helm, chart string, args ...string) ([]string, error) {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", releaseName, chart, "--namespace", namespace}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// Not the arguments: they may hold the secret a case passes.
		return nil, fmt.Errorf("helm template: %w\n%s", err, stderr.String())
	}
	var docs []string
	for _, d := range strings.Split(string(out), "\n---") {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(doc))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// scaledObject mirrors KEDA's keda.sh/v1alpha1 ScaledObject
// (apis/keda/v1alpha1/scaledobject_types.go), whose module would pull all of
// KEDA into this one; only the spec fields KEDA defines are accepted.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		ScaleTargetRef *struct {
			Name                   string `json:"name"`
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		Advanced              *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
				Name     string                                         `json:"name,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
			MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// manifests are the decoded objects of one rendering, by kind.
type manifests struct {
	deployments     []*appsv1.Deployment
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	pdbs            []*policyv1.PodDisruptionBudget
	jobs            []*batchv1.Job
	serviceMonitors []*monitoringv1.ServiceMonitor
	scaledObjects   []*scaledObject
}

// decodeStrict decodes every manifest into its Kubernetes API type, refusing
// unknown and duplicate fields: a misspelt field name fails here, not at
// kubectl apply time (or worse, silently).
func decodeStrict(t *testing.T, docs []string) manifests {
	t.Helper()
	var m manifests
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("manifest is not YAML: %v\n%s", err, doc)
		}
		var target any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/Deployment":
			o := &appsv1.Deployment{}
			m.deployments, target = append(m.deployments, o), o
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			m.configMaps, target = append(m.configMaps, o), o
		case "v1/Service":
			o := &corev1.Service{}
			m.services, target = append(m.services, o), o
		case "v1/ServiceAccount":
			o := &corev1.ServiceAccount{}
			m.serviceAccounts, target = append(m.serviceAccounts, o), o
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			m.pdbs, target = append(m.pdbs, o), o
		case "batch/v1/Job":
			o := &batchv1.Job{}
			m.jobs, target = append(m.jobs, o), o
		case "monitoring.coreos.com/v1/ServiceMonitor":
			o := &monitoringv1.ServiceMonitor{}
			m.serviceMonitors, target = append(m.serviceMonitors, o), o
		case "keda.sh/v1alpha1/ScaledObject":
			o := &scaledObject{}
			m.scaledObjects, target = append(m.scaledObjects, o), o
		default:
			t.Fatalf("rendered a %s %s this test does not decode; add its type\n%s", tm.APIVersion, tm.Kind, doc)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
			t.Fatalf("%s %s does not decode strictly: %v\n%s", tm.APIVersion, tm.Kind, err, doc)
		}
	}
	return m
}

func TestHelmChartDefaults(t *testing.T) {
	helm := helmBinary(t)
	docs, err := render(t, helm, offlineChart(t))
	if err != nil {
		t.Fatal(err)
	}
	m := decodeStrict(t, docs)
	if len(m.deployments) != 1 || len(m.pdbs) != 1 || len(m.jobs) != 1 || len(m.configMaps) != 2 || len(m.services) != 1 {
		t.Fatalf("default rendering: %d deployments, %d PDBs, %d jobs, %d config maps, %d services; want 1, 1, 1, 2 (workers', provision hook's), 1",
			len(m.deployments), len(m.pdbs), len(m.jobs), len(m.configMaps), len(m.services))
	}
	if len(m.serviceMonitors)+len(m.scaledObjects) != 0 {
		t.Fatal("ServiceMonitor or ScaledObject rendered by default; both are opt-in (their CRDs may not exist)")
	}
	d := m.deployments[0]
	checkWorkerPod(t, d, 20)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Fatalf("replicas %v, want replicaCount 2 without KEDA", d.Spec.Replicas)
	}
	checkPDB(t, m.pdbs[0], d)
	checkProvisionJob(t, m.jobs[0], d)
	cfg := workerConfig(t, m, d)
	if url := cfg["nats"].(map[string]any)["url"]; url != "nats://nats:4222" {
		t.Fatalf("nats.url %v; want nats://nats:4222 (a Service called nats) by default, never empty (an embedded server per pod)", url)
	}
	if cfg["ops"].(map[string]any)["listen"] != "0.0.0.0:9464" {
		t.Fatalf("ops.listen %v, want 0.0.0.0:9464 (the probes' port)", cfg["ops"])
	}
}

func TestHelmChartFullValues(t *testing.T) {
	helm := helmBinary(t)
	docs, err := render(t, helm, offlineChart(t), "-f", fullValues)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeStrict(t, docs)
	if len(m.deployments) != 1 || len(m.serviceMonitors) != 1 || len(m.scaledObjects) != 1 {
		t.Fatalf("full rendering: %d deployments, %d ServiceMonitors, %d ScaledObjects; want one each", len(m.deployments), len(m.serviceMonitors), len(m.scaledObjects))
	}
	d := m.deployments[0]
	checkWorkerPod(t, d, 60)
	if d.Spec.Replicas != nil {
		t.Fatalf("replicas %d set with KEDA on; KEDA's HPA owns the count and a set value fights it on every upgrade", *d.Spec.Replicas)
	}
	if got := d.Spec.Template.Spec.TerminationGracePeriodSeconds; got == nil || *got != 90 {
		t.Fatalf("terminationGracePeriodSeconds %v, want the 90 the values set", got)
	}
	checkPDB(t, m.pdbs[0], d)
	checkProvisionJob(t, m.jobs[0], d)

	// Secrets only by reference: env from the existing Secrets, files from
	// mounted Secrets, and nothing secret in the ConfigMap.
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for name, secret := range map[string]string{"NATS_PASSWORD": "setrelay-nats", "CAEP_CLIENT_SECRET": "setrelay-receivers", "SSF_TOKEN": "setrelay-receivers"} {
		e, ok := env[name]
		if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secret || e.Value != "" {
			t.Fatalf("env %s = %+v; want a secretKeyRef to %s", name, e, secret)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	if v := volumes["keys"]; v.Secret == nil || v.Secret.SecretName != "setrelay-signing-keys" || *v.Secret.DefaultMode != 0o400 {
		t.Fatalf("keys volume %+v; want Secret setrelay-signing-keys, mode 0400", v)
	}
	cfg := workerConfig(t, m, d)
	keys := cfg["keys"].([]any)
	if len(keys) != 3 {
		t.Fatalf("keys %v; want the three configured", keys)
	}
	if k := keys[0].(map[string]any); k["file"] != "/etc/setrelay/keys/k1.pem" || k["secretKey"] != nil {
		t.Fatalf("key k1 %v; want file /etc/setrelay/keys/k1.pem (the mounted Secret's key)", k)
	}
	if p, ok := keys[1].(map[string]any)["pkcs11"].(map[string]any); !ok || p["module"] != "/opt/hsm/lib/libsofthsm2.so" || p["pin_file"] != "/etc/setrelay/secrets/hsm/pin" {
		t.Fatalf("HSM key %v; want keys[].pkcs11 passed through", keys[1])
	}
	if k, ok := keys[2].(map[string]any)["kms"].(map[string]any); !ok || k["provider"] != "aws" || !strings.HasPrefix(k["key_id"].(string), "arn:aws:kms:") {
		t.Fatalf("KMS key %v; want keys[].kms passed through", keys[2])
	}
	nats := cfg["nats"].(map[string]any)
	if nats["password"] != "${NATS_PASSWORD}" || nats["url"] != "nats://relay-nats.identity.svc:4222" {
		t.Fatalf("nats %v; want the password by reference and the bundled cluster's URL", nats)
	}

	// The ServiceMonitor scrapes the Service's ops port.
	sm := m.serviceMonitors[0]
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "ops" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Fatalf("ServiceMonitor endpoints %+v; want port ops, /metrics", sm.Spec.Endpoints)
	}
	if sm.Labels["release"] != "prometheus" {
		t.Fatalf("ServiceMonitor labels %v; want serviceMonitor.labels added", sm.Labels)
	}

	// One nats-jetstream trigger per receiver, on its consumer, with the
	// metadata KEDA's scaler reads (pkg/scalers/nats_jetstream_scaler.go).
	so := m.scaledObjects[0]
	if ref := so.Spec.ScaleTargetRef; ref == nil || ref.Name != d.Name || ref.Kind != "Deployment" {
		t.Fatalf("scaleTargetRef %+v; want Deployment %s", ref, d.Name)
	}
	if *so.Spec.MinReplicaCount != 2 || *so.Spec.MaxReplicaCount != 8 || *so.Spec.PollingInterval != 10 {
		t.Fatalf("replicas %d..%d polling %d; want 2..8, 10 from the values", *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount, *so.Spec.PollingInterval)
	}
	receivers := []string{"caep-example", "ssf"}
	if len(so.Spec.Triggers) != len(receivers) {
		t.Fatalf("%d triggers; want one per receiver (%v)", len(so.Spec.Triggers), receivers)
	}
	for i, tr := range so.Spec.Triggers {
		want := map[string]string{
			"natsServerMonitoringEndpoint": "relay-nats-headless.identity.svc.cluster.local:8222",
			"account":                      "SETRELAY",
			"stream":                       queue.IntentStream,
			"consumer":                     queue.ConsumerName(receivers[i]),
			"lagThreshold":                 "500",
			"activationLagThreshold":       "10",
			"useHttps":                     "false",
		}
		if tr.Type != "nats-jetstream" {
			t.Fatalf("trigger %d type %q; want nats-jetstream", i, tr.Type)
		}
		for k, v := range want {
			if tr.Metadata[k] != v {
				t.Fatalf("trigger %d metadata %s = %q; want %q (all: %v)", i, k, tr.Metadata[k], v, tr.Metadata)
			}
		}
		if len(tr.Metadata) != len(want) {
			t.Fatalf("trigger %d metadata %v; want exactly %v", i, tr.Metadata, want)
		}
	}
}

// TestHelmChartRefusesMistakes: values that would put a secret in a
// ConfigMap, kill pushes mid-grace or scale on nothing fail the rendering
// with a message saying what to do.
func TestHelmChartRefusesMistakes(t *testing.T) {
	helm := helmBinary(t)
	chart := offlineChart(t)
	cases := map[string]struct {
		args []string
		want string
	}{
		"literal client secret": {[]string{"--set", "config.receivers[0].name=r", "--set", "config.receivers[0].auth.client_secret=hunter2"}, "holds a literal secret"},
		"literal NATS password": {[]string{"--set", "config.nats.password=hunter2"}, "config.nats.password holds a literal secret"},
		"grace too short":       {[]string{"--set", "terminationGracePeriodSeconds=20"}, "must be longer than config.worker.grace_period"},
		"KEDA without endpoint": {[]string{"--set", "keda.enabled=true", "--set", "config.receivers[0].name=r"}, "keda.natsMonitoringEndpoint"},
		"key without source":    {[]string{"--set", "keys.items[0].id=k", "--set", "keys.items[0].alg=ES256"}, "has no source"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, helm, chart, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want one saying %q", err, c.want)
			}
			if strings.Contains(c.want, "secret") && strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the error repeats the secret")
			}
		})
	}
}

// checkWorkerPod checks the hardening and lifecycle every worker pod needs.
func checkWorkerPod(t *testing.T, d *appsv1.Deployment, graceSeconds int64) {
	t.Helper()
	ps := d.Spec.Template.Spec
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot ||
		ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser == 0 {
		t.Fatalf("pod securityContext %+v; want runAsNonRoot with a non-zero user", ps.SecurityContext)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Fatalf("container securityContext %+v; want read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "ops" {
			t.Fatalf("%s probe %+v; want GET %s on port ops", name, p, path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("startup", c.StartupProbe, "/healthz")
	if len(c.Ports) != 1 || c.Ports[0].Name != "ops" || c.Ports[0].ContainerPort != 9464 {
		t.Fatalf("ports %+v; want ops 9464", c.Ports)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Fatalf("resources %+v; want CPU and memory requests and a memory limit", c.Resources)
	}
	if len(ps.TopologySpreadConstraints) == 0 {
		t.Fatal("no topologySpreadConstraints")
	}
	for _, tsc := range ps.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || !selects(tsc.LabelSelector.MatchLabels, d.Spec.Template.Labels) {
			t.Fatalf("topology spread %+v does not select the worker pods", tsc)
		}
	}
	if ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds <= graceSeconds {
		t.Fatalf("terminationGracePeriodSeconds %v; want more than worker.grace_period (%ds)", ps.TerminationGracePeriodSeconds, graceSeconds)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Fatal("the service account token is mounted; setrelay never calls the Kubernetes API")
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Fatalf("selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	if len(c.Args) != 3 || c.Args[0] != "run" || c.Args[2] != "/etc/setrelay/config/config.yaml" {
		t.Fatalf("args %v; want run --config /etc/setrelay/config/config.yaml", c.Args)
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == "/etc/setrelay/config" && vm.ReadOnly {
			mounted = true
		}
		if vm.MountPath == "/tmp" && vm.ReadOnly {
			t.Fatal("/tmp is read-only; the root filesystem already is")
		}
	}
	if !mounted {
		t.Fatal("the configuration is not mounted read-only at /etc/setrelay/config")
	}
}

func checkPDB(t *testing.T, p *policyv1.PodDisruptionBudget, d *appsv1.Deployment) {
	t.Helper()
	if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Fatalf("PodDisruptionBudget selector %+v does not select the worker pods", p.Spec.Selector)
	}
	if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
		t.Fatal("PodDisruptionBudget without maxUnavailable or minAvailable")
	}
}

// checkProvisionJob: a pre-install/pre-upgrade hook with its own
// configuration, hardened like the workers, and not one of the workers.
func checkProvisionJob(t *testing.T, j *batchv1.Job, d *appsv1.Deployment) {
	t.Helper()
	if hook := j.Annotations["helm.sh/hook"]; hook != "pre-install,pre-upgrade" {
		t.Fatalf("provision Job hook %q; want pre-install,pre-upgrade", hook)
	}
	c := j.Spec.Template.Spec.Containers[0]
	if len(c.Args) < 1 || c.Args[0] != "provision" {
		t.Fatalf("provision Job args %v", c.Args)
	}
	if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("provision Job securityContext %+v", sc)
	}
	if selects(d.Spec.Selector.MatchLabels, j.Spec.Template.Labels) {
		t.Fatal("the provision Job's pod matches the workers' selector (Service, PDB and spread would count it)")
	}
	for _, v := range j.Spec.Template.Spec.Volumes {
		if v.Name == "config" && (v.ConfigMap == nil || !strings.HasSuffix(v.ConfigMap.Name, "-provision")) {
			t.Fatalf("provision Job mounts %+v; a pre-install hook runs before the release's ConfigMap exists", v)
		}
	}
}

// workerConfig is the config.yaml the Deployment mounts, decoded.
func workerConfig(t *testing.T, m manifests, d *appsv1.Deployment) map[string]any {
	t.Helper()
	var name string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			name = v.ConfigMap.Name
		}
	}
	for _, cm := range m.configMaps {
		if cm.Name == name {
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
				t.Fatalf("config.yaml in ConfigMap %s: %v", name, err)
			}
			return cfg
		}
	}
	t.Fatalf("the Deployment mounts ConfigMap %q, which was not rendered", name)
	return nil
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestHelmChartConfigIsValid: the config.yaml the chart renders from the
// full-featured values, file, HSM and KMS keys included, is one setrelay
// accepts (config.Parse is strict: a misspelt key fails).
func TestHelmChartConfigIsValid(t *testing.T) {
	helm := helmBinary(t)
	docs, err := render(t, helm, offlineChart(t), "-f", fullValues)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeStrict(t, docs)
	if len(m.configMaps) != 2 {
		t.Fatalf("%d ConfigMaps; want the workers' and the provision hook's", len(m.configMaps))
	}
	for _, cm := range m.configMaps {
		env := map[string]string{"NATS_PASSWORD": "p", "CAEP_CLIENT_SECRET": "s", "SSF_TOKEN": "t"}
		cfg, err := config.Parse([]byte(cm.Data["config.yaml"]), "/etc/setrelay/config/config.yaml", func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
		if err != nil {
			t.Fatalf("ConfigMap %s: setrelay rejects the rendered config: %v\n%s", cm.Name, err, cm.Data["config.yaml"])
		}
		if got := cfg.Receivers[0].MaxInFlight; got != 16 {
			t.Fatalf("ConfigMap %s: max_in_flight %d, want 16", cm.Name, got)
		}
		if cfg.Keys[1].PKCS11 == nil || cfg.Keys[2].KMS == nil || cfg.Keys[0].File != "/etc/setrelay/keys/k1.pem" {
			t.Fatalf("ConfigMap %s: keys %+v; want a file, a PKCS#11 and a KMS key", cm.Name, cfg.Keys)
		}
	}
}
