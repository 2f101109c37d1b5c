package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

type servescopeContainer struct {
	pod       *corev1.PodSpec
	container *corev1.Container
}

// podSpecs are the pod specs an object embeds: a Deployment's template, a RayService's head and worker
// group templates, an InferenceService's predictor.
func podSpecs(o object) []*corev1.PodSpec {
	switch typed := o.typed.(type) {
	case *appsv1.Deployment:
		return []*corev1.PodSpec{&typed.Spec.Template.Spec}
	case *rayService:
		specs := []*corev1.PodSpec{&typed.Spec.RayClusterConfig.HeadGroupSpec.Template.Spec}
		for i := range typed.Spec.RayClusterConfig.WorkerGroupSpecs {
			specs = append(specs, &typed.Spec.RayClusterConfig.WorkerGroupSpecs[i].Template.Spec)
		}
		return specs
	case *inferenceService:
		return []*corev1.PodSpec{&typed.Spec.Predictor.PodSpec}
	default:
		return nil
	}
}

// servescopeContainers are the collector containers of an object's pod specs.
func servescopeContainers(o object) []servescopeContainer {
	var out []servescopeContainer
	for _, spec := range podSpecs(o) {
		for i := range spec.Containers {
			if c := &spec.Containers[i]; c.Name == "servescope" {
				out = append(out, servescopeContainer{spec, c})
			}
		}
	}
	return out
}

// dockerfile is what the tests read of deploy/Dockerfile: its final stage's instructions.
type dockerfile struct {
	entrypoint, cmd []string
	user            string
	exposed         []int32
	copiedBinary    string // the path the build stage's binary is copied from
	copiedConfig    string // the repository file copied to /etc/servescope/config.yaml
	buildRuns       []string
}

func readDockerfile(t *testing.T) dockerfile { return readDockerfileStage(t, "") }

// readDockerfileStage reads one stage of deploy/Dockerfile: the one named stage ("FROM ... AS stage"), or
// the last, the default target, for "". buildRuns are the build stage's in every case.
func readDockerfileStage(t *testing.T, stage string) dockerfile {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Continuation lines joined, comments dropped.
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	stages := map[string]*dockerfile{}
	var buildRuns []string
	var d *dockerfile
	from, last := "", ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		if strings.ToUpper(word) == "FROM" {
			from = rest
			_, name, _ := strings.Cut(rest, " AS ")
			last = name
			d = &dockerfile{}
			stages[name] = d
			continue
		}
		if d == nil {
			continue // ARG before the first FROM
		}
		switch strings.ToUpper(word) {
		case "RUN":
			if strings.HasSuffix(from, " AS build") {
				buildRuns = append(buildRuns, rest)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT is not in exec form: %v", err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &d.cmd); err != nil {
				t.Fatalf("CMD is not in exec form: %v", err)
			}
		case "USER":
			d.user = rest
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				n, err := strconv.Atoi(p)
				if err != nil {
					t.Fatalf("EXPOSE %s: %v", p, err)
				}
				d.exposed = append(d.exposed, int32(n))
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) == 3 && f[0] == "--from=build" && strings.HasSuffix(f[2], "/otelcol-servescope") {
				d.copiedBinary = f[1]
			} else if len(f) == 2 && f[1] == "/etc/servescope/config.yaml" {
				d.copiedConfig = f[0]
			}
		}
	}
	if stage == "" {
		stage = last
	}
	got, ok := stages[stage]
	if !ok {
		t.Fatalf("the Dockerfile has no stage %q", stage)
	}
	got.buildRuns = buildRuns
	return *got
}

// The image is built by the same `make build` the tests build the binary with, and runs the binary as the
// manifests expect: its path, its --config, its user, its ports.
func TestDockerfileAgreesWithTheBuildAndTheManifests(t *testing.T) {
	d := readDockerfile(t)
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	bin := regexp.MustCompile(`(?m)^BIN\s*:=\s*(\S+)$`).FindSubmatch(makefile)
	if bin == nil {
		t.Fatal("no BIN := in the Makefile")
	}
	if !slices.ContainsFunc(d.buildRuns, func(r string) bool { return strings.Contains(r, "make build") }) {
		t.Errorf("the build stage does not run make build: %q", d.buildRuns)
	}
	if want := "/src/" + string(bin[1]); d.copiedBinary != want {
		t.Errorf("the image copies %q from the build stage, make build writes %q", d.copiedBinary, want)
	}
	if !slices.Equal(d.entrypoint, []string{"/otelcol-servescope"}) {
		t.Errorf("ENTRYPOINT %q, want the binary", d.entrypoint)
	}
	if !slices.Equal(d.cmd, []string{"--config=/etc/servescope/config.yaml"}) {
		t.Errorf("CMD %q, want --config=/etc/servescope/config.yaml", d.cmd)
	}
	if d.user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (distroless' nonroot)", d.user)
	}

	containers := 0
	for _, o := range allObjects(t) {
		for _, c := range servescopeContainers(o) {
			containers++
			where := o.source + ": " + o.name
			if !slices.Equal(c.container.Args, d.cmd) {
				t.Errorf("%s: args %q, the image's default is %q", where, c.container.Args, d.cmd)
			}
			if !mountsConfigAt(c, "/etc/servescope") {
				t.Errorf("%s: no ConfigMap with config.yaml mounted at /etc/servescope", where)
			}
			names := map[string]bool{}
			for _, p := range c.container.Ports {
				names[p.Name] = true
				if !slices.Contains(d.exposed, p.ContainerPort) {
					t.Errorf("%s: port %d is not exposed by the image (%v)", where, p.ContainerPort, d.exposed)
				}
			}
			for _, probe := range []*corev1.Probe{c.container.LivenessProbe, c.container.ReadinessProbe} {
				if probe == nil || probe.HTTPGet == nil || !names[probe.HTTPGet.Port.String()] {
					t.Errorf("%s: a probe missing, or on an undeclared port", where)
				} else if port := portNumber(c.container, probe.HTTPGet.Port.String()); port != 13133 {
					t.Errorf("%s: probed on %d, health_check listens on 13133", where, port)
				}
			}
			user := c.container.SecurityContext
			if user == nil || user.RunAsUser == nil {
				if c.pod.SecurityContext != nil && c.pod.SecurityContext.RunAsUser != nil {
					user = &corev1.SecurityContext{RunAsUser: c.pod.SecurityContext.RunAsUser}
				}
			}
			if user == nil || user.RunAsUser == nil || *user.RunAsUser != 65532 {
				t.Errorf("%s: the container does not run as the image's user 65532", where)
			}
		}
	}
	// The plain sidecar's vLLM Deployment and the gateway's, in kubernetes/ and in the chart; the RayService's
	// GPU workers and the InferenceService's predictor.
	if containers != 5 {
		t.Errorf("found %d servescope containers, want 5", containers)
	}
}

func mountsConfigAt(c servescopeContainer, dir string) bool {
	for _, m := range c.container.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for _, v := range c.pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				return true
			}
		}
	}
	return false
}

func portNumber(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// KEDA reads the scale endpoint llm_routing serves, at the gateway Service's routing port, for a pool of
// the model the scaled Deployment serves.
func TestScaledObjectsReadTheGatewaysScaleEndpoint(t *testing.T) {
	objects := allObjects(t)
	services := map[string]*corev1.Service{}
	models := map[string]string{} // Deployment name -> the model its engine serves
	for _, o := range objects {
		switch typed := o.typed.(type) {
		case *corev1.Service:
			services[typed.Name+"."+typed.Namespace] = typed
		case *appsv1.Deployment:
			for _, c := range typed.Spec.Template.Spec.Containers {
				for _, a := range c.Args {
					if m, ok := strings.CutPrefix(a, "--model="); ok {
						models[typed.Name] = m
					}
				}
			}
		}
	}
	scaled := 0
	for _, o := range objects {
		so, ok := o.typed.(*scaledObject)
		if !ok {
			continue
		}
		scaled++
		if len(so.Spec.Triggers) != 1 {
			t.Fatalf("%s: %d triggers, want the one", o.source, len(so.Spec.Triggers))
		}
		trig := so.Spec.Triggers[0]
		if trig.Type != "metrics-api" || trig.MetricType != "AverageValue" || trig.Metadata["valueLocation"] != "desiredReplicas" || trig.Metadata["targetValue"] != "1" {
			t.Errorf("%s: trigger %+v does not read desiredReplicas as one replica per unit", o.source, trig)
		}
		u, err := url.Parse(trig.Metadata["url"])
		if err != nil {
			t.Fatalf("%s: %v", o.source, err)
		}
		svc := services[strings.TrimSuffix(u.Hostname(), ".svc.cluster.local")]
		if svc == nil {
			t.Errorf("%s: %s is no Service here", o.source, u.Hostname())
		} else if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == u.Port() && p.Name == "routing" }) {
			t.Errorf("%s: port %s is not the Service's routing port", o.source, u.Port())
		}
		model, ok := strings.CutPrefix(u.EscapedPath(), "/v1/pools/")
		model, ok2 := strings.CutSuffix(model, "/scale")
		if !ok || !ok2 || strings.Contains(model, "/") {
			t.Errorf("%s: %s is not /v1/pools/{model}/scale with the model escaped", o.source, u.EscapedPath())
		}
		if unescaped, _ := url.PathUnescape(model); unescaped != models[so.Spec.ScaleTargetRef.Name] {
			t.Errorf("%s: reads the pool of %q, %s serves %q", o.source, unescaped, so.Spec.ScaleTargetRef.Name, models[so.Spec.ScaleTargetRef.Name])
		}
	}
	if scaled != 2 {
		t.Errorf("found %d ScaledObjects, want 2 (kubernetes/keda and the chart's gateway)", scaled)
	}
}

// schemaName is the value of one of the attribute constants generated from schema/canonical.yaml
// (internal/schema/names.go), which the components use: the deploy module reads it from there rather than
// restating it.
func schemaName(t *testing.T, constant string) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../internal/schema/names.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name != constant || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					return v
				}
			}
		}
	}
	t.Fatalf("internal/schema/names.go declares no string constant %s", constant)
	return ""
}

// podLabel is one of k8s_attributes' extract.labels.
type podLabel struct {
	TagName string `json:"tag_name"`
	Key     string
	From    string
}

// k8s_attributes on the gateway names the pod every record came from: first by the pod IP a resource
// carries (the ray_serve receiver's, the Ray node's IP: under KubeRay the pod's), then by the connection's
// address (a sidecar sends from its replica's pod). It extracts what incidents name, KubeRay's labels under
// the names the schema gives them, and the RBAC lets it read that.
func TestGatewayK8sAttributesHasWhatItNeeds(t *testing.T) {
	// What the ray_serve receiver puts on each node's resource.
	podIP := schemaName(t, "AttrK8sPodIp")
	// KubeRay's pod label -> the resource attribute the schema names for it.
	rayLabels := map[string]string{
		"ray.io/cluster":   schemaName(t, "AttrRayClusterName"),
		"ray.io/node-type": schemaName(t, "AttrRayNodeType"),
		"ray.io/serve":     schemaName(t, "AttrRayServeTraffic"),
	}
	objects := allObjects(t)
	checked := 0
	for _, o := range objects {
		cm, ok := o.typed.(*corev1.ConfigMap)
		if !ok || !strings.Contains(o.name, "gateway") {
			continue
		}
		var cfg struct {
			Processors map[string]struct {
				PodAssociation []struct {
					Sources []struct{ From, Name string }
				} `json:"pod_association"`
				Extract struct {
					Metadata []string
					Labels   []podLabel
				}
			}
			Service struct {
				Pipelines map[string]struct{ Receivers, Processors []string }
			}
		}
		if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
			t.Fatal(err)
		}
		k8s, ok := cfg.Processors["k8s_attributes"]
		if !ok {
			t.Errorf("%s: no k8s_attributes", o.source)
			continue
		}
		checked++
		// The first association that resolves wins, and the connection always does: the pod IP comes first.
		assoc := k8s.PodAssociation
		if len(assoc) < 2 || len(assoc[0].Sources) != 1 || assoc[0].Sources[0].From != "resource_attribute" || assoc[0].Sources[0].Name != podIP {
			t.Errorf("%s: the first pod association is not by the resource attribute %s: %+v", o.source, podIP, assoc)
		} else if len(assoc[1].Sources) != 1 || assoc[1].Sources[0].From != "connection" {
			t.Errorf("%s: the second pod association is not by connection: %+v", o.source, assoc[1])
		}
		for _, attr := range []string{schemaName(t, "AttrK8sPodName"), schemaName(t, "AttrK8sNamespaceName"), schemaName(t, "AttrK8sNodeName"), schemaName(t, "AttrK8sDeploymentName")} {
			if !slices.Contains(k8s.Extract.Metadata, attr) {
				t.Errorf("%s: k8s_attributes does not extract %s", o.source, attr)
			}
		}
		for key, tag := range rayLabels {
			if !slices.Contains(k8s.Extract.Labels, podLabel{TagName: tag, Key: key, From: "pod"}) {
				t.Errorf("%s: k8s_attributes does not extract the pod label %s as %s", o.source, key, tag)
			}
		}
		for name, p := range cfg.Service.Pipelines {
			if slices.Contains(p.Receivers, "otlp") && !slices.Contains(p.Processors, "k8s_attributes") {
				t.Errorf("%s: pipeline %s takes OTLP without k8s_attributes", o.source, name)
			}
		}
	}
	if checked != 2 {
		t.Errorf("checked %d gateway configurations, want 2", checked)
	}
	// The ClusterRole lets it get, list and watch pods and namespaces (and nodes, and the ReplicaSets behind
	// k8s.deployment.name).
	roles := 0
	for _, o := range objects {
		role, ok := o.typed.(*rbacv1.ClusterRole)
		if !ok {
			continue
		}
		roles++
		for _, need := range []struct{ group, resource string }{{"", "pods"}, {"", "namespaces"}, {"", "nodes"}, {"apps", "replicasets"}} {
			granted := slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
				return slices.Contains(r.APIGroups, need.group) && slices.Contains(r.Resources, need.resource) &&
					slices.Contains(r.Verbs, "get") && slices.Contains(r.Verbs, "list") && slices.Contains(r.Verbs, "watch")
			})
			if !granted {
				t.Errorf("%s: ClusterRole %s does not grant get, list and watch on %s", o.source, o.name, need.resource)
			}
		}
	}
	if roles != 2 {
		t.Errorf("found %d ClusterRoles, want 2", roles)
	}
}

// engineReceivers are the receiver types that scrape an engine (their ids are type or type/name).
var engineReceivers = []string{"vllm", "sglang", "tensorrt_llm", "llama_cpp", "triton", "ray_serve"}

// In a pod, a sidecar scrapes its engine on localhost, which names no replica: every replica would report
// as localhost:<port>, and the gateway's llm_signals would take a pool's replicas for one. Each sidecar names
// its replica by the pod instead (service.instance.id from SERVESCOPE_REPLICA, $(POD_IP):<port>), as its GPU
// metrics do.
func TestSidecarsNameTheirReplicaByThePod(t *testing.T) {
	checked := 0
	for _, c := range embeddedConfigs(t, allObjects(t)) {
		var cfg struct {
			Receivers map[string]struct {
				Endpoint           string            `json:"endpoint"`
				ResourceAttributes map[string]string `json:"resource_attributes"`
			}
		}
		if err := yaml.Unmarshal(c.yaml, &cfg); err != nil {
			t.Fatal(err)
		}
		for id, r := range cfg.Receivers {
			kind, _, _ := strings.Cut(id, "/")
			if !slices.Contains(engineReceivers, kind) || !strings.Contains(r.Endpoint, "localhost") || strings.HasPrefix(c.name, "the image's") {
				continue
			}
			checked++
			if got := r.ResourceAttributes["service.instance.id"]; !strings.HasPrefix(got, "${env:SERVESCOPE_REPLICA") {
				t.Errorf("%s: receiver %s scrapes %s and names its replica %q, not the pod's SERVESCOPE_REPLICA", c.name, id, r.Endpoint, got)
			}
		}
	}
	// The plain sidecar's ConfigMap and the Operator's CR, the chart's two, the KubeRay and KServe sidecars.
	if checked != 6 {
		t.Errorf("checked %d sidecar engine receivers, want 6", checked)
	}
}
