// Package deploy tests what deploy/ ships for Kubernetes: the Helm chart renders for both modes as its
// golden files say, every object it renders and every manifest under kubernetes/ decodes strictly into its
// API type, and every collector configuration they embed validates on the built binary.
//
// It is its own Go module so that the distribution's go.mod does not carry Helm's dependencies. `make
// deploy-test` builds the collector and passes it in SERVESCOPE_BIN; without it the validation tests skip.
package deploy

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the chart's golden files from what it renders")

const chartDir = "helm/servescope"

// The chart's modes as the tests render them: the release name and namespace are those the README's
// commands use.
var chartCases = []struct {
	mode, release, namespace, golden string
}{
	{"sidecar", "servescope-sidecar", "llm", "helm/testdata/sidecar.golden.yaml"},
	{"gateway", "servescope-gateway", "servescope", "helm/testdata/gateway.golden.yaml"},
}

// renderChart runs what `helm template` runs: an install, client-side only, with the chart's values
// (and mode) as given.
func renderChart(t *testing.T, mode, release, namespace string) string {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = release
	install.Namespace = namespace
	install.Replace = true
	rel, err := install.Run(chrt, map[string]any{"mode": mode})
	if err != nil {
		t.Fatalf("rendering the chart in %s mode: %v", mode, err)
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("rendering gave a %T, not a v1 release", rel)
	}
	return strings.TrimSpace(r.Manifest) + "\n"
}

func TestChartRendersAsGolden(t *testing.T) {
	for _, c := range chartCases {
		t.Run(c.mode, func(t *testing.T) {
			got := renderChart(t, c.mode, c.release, c.namespace)
			if *update {
				if err := os.WriteFile(c.golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(c.golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("the chart renders differently from %s (review, then go test -update):\n%s", c.golden, lineDiff(string(want), got))
			}
		})
	}
}

func TestChartRejectsUnknownEngine(t *testing.T) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "servescope-sidecar"
	install.Namespace = "llm"
	_, err = install.Run(chrt, map[string]any{"engine": map[string]any{"type": "vllm2"}})
	if err == nil || !strings.Contains(err.Error(), "engine.type must be one of") {
		t.Fatalf("an unknown engine should stop the render, got %v", err)
	}
}

// object is one YAML document of a manifest, where it came from, and its decoded form.
type object struct {
	source     string
	kind, name string
	typed      any
}

// strictDecoder decodes any kind client-go's scheme knows into its k8s.io/api type; unknown and duplicate
// fields are errors.
var strictDecoder = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// decodeStrictly decodes every document of a multi-document YAML stream: API kinds into k8s.io/api types,
// the custom resources into the local types of crds_test.go.
func decodeStrictly(t *testing.T, source string, stream []byte) []object {
	t.Helper()
	var out []object
	reader := utilyaml.NewYAMLReader(bufioReader(stream))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		o := object{source: source, kind: head.Kind, name: head.Metadata.Name}
		switch head.APIVersion + "/" + head.Kind {
		case "opentelemetry.io/v1beta1/OpenTelemetryCollector":
			var cr openTelemetryCollector
			if err := yaml.UnmarshalStrict(doc, &cr); err != nil {
				t.Errorf("%s: %s %s: %v", source, head.Kind, head.Metadata.Name, err)
				continue
			}
			o.typed = &cr
		case "ray.io/v1/RayService":
			var rs rayService
			if err := yaml.UnmarshalStrict(doc, &rs); err != nil {
				t.Errorf("%s: %s %s: %v", source, head.Kind, head.Metadata.Name, err)
				continue
			}
			o.typed = &rs
		case "serving.kserve.io/v1beta1/InferenceService":
			var is inferenceService
			if err := yaml.UnmarshalStrict(doc, &is); err != nil {
				t.Errorf("%s: %s %s: %v", source, head.Kind, head.Metadata.Name, err)
				continue
			}
			o.typed = &is
		case "keda.sh/v1alpha1/ScaledObject":
			var so scaledObject
			if err := yaml.UnmarshalStrict(doc, &so); err != nil {
				t.Errorf("%s: %s %s: %v", source, head.Kind, head.Metadata.Name, err)
				continue
			}
			o.typed = &so
		default:
			typed, _, err := strictDecoder.Decode(doc, nil, nil)
			if err != nil {
				t.Errorf("%s: %s %s: %v", source, head.Kind, head.Metadata.Name, err)
				continue
			}
			if _, isUnstructured := typed.(runtime.Unstructured); isUnstructured {
				t.Errorf("%s: %s %s has no k8s.io/api type", source, head.Kind, head.Metadata.Name)
				continue
			}
			o.typed = typed
		}
		if o.name == "" {
			t.Errorf("%s: a %s without a name", source, head.Kind)
		}
		out = append(out, o)
	}
	return out
}

// manifestFiles are the YAML files under kubernetes/.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// allObjects decodes the manifests and both renders of the chart.
func allObjects(t *testing.T) []object {
	t.Helper()
	var objects []object
	for _, f := range manifestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objects = append(objects, decodeStrictly(t, f, data)...)
	}
	for _, c := range chartCases {
		objects = append(objects, decodeStrictly(t, "chart ("+c.mode+")", []byte(renderChart(t, c.mode, c.release, c.namespace)))...)
	}
	return objects
}

func TestEveryObjectDecodesStrictly(t *testing.T) {
	objects := allObjects(t)
	// What each source must hold: a file or mode that lost an object fails here, not silently.
	want := map[string][]string{
		"kubernetes/sidecar/configmap.yaml":               {"ConfigMap/servescope-sidecar"},
		"kubernetes/sidecar/vllm-deployment.yaml":         {"Deployment/vllm-llama-8b"},
		"kubernetes/operator/opentelemetrycollector.yaml": {"OpenTelemetryCollector/servescope-sidecar"},
		"kubernetes/operator/vllm-deployment.yaml":        {"Deployment/vllm-llama-8b"},
		"kubernetes/namespaces.yaml":                      {"Namespace/llm", "Namespace/servescope"},
		"kubernetes/gateway/rbac.yaml":                    {"ServiceAccount/servescope-gateway", "ClusterRole/servescope-gateway", "ClusterRoleBinding/servescope-gateway"},
		"kubernetes/gateway/configmap.yaml":               {"ConfigMap/servescope-gateway"},
		"kubernetes/gateway/deployment.yaml":              {"Deployment/servescope-gateway"},
		"kubernetes/gateway/service.yaml":                 {"Service/servescope-gateway", "NetworkPolicy/servescope-gateway"},
		"kubernetes/keda/scaledobject.yaml":               {"ScaledObject/vllm-llama-8b"},
		"kubernetes/kuberay/configmap.yaml":               {"ConfigMap/servescope-ray-sidecar"},
		"kubernetes/kuberay/rayservice.yaml":              {"RayService/llm-serve"},
		"kubernetes/kserve/configmap.yaml":                {"ConfigMap/servescope-kserve-sidecar"},
		"kubernetes/kserve/inferenceservice.yaml":         {"InferenceService/llama-8b"},
		"chart (sidecar)":                                 {"ConfigMap/servescope-sidecar", "OpenTelemetryCollector/servescope-sidecar"},
		"chart (gateway)": {
			"ConfigMap/servescope-gateway", "ServiceAccount/servescope-gateway",
			"ClusterRole/servescope-gateway", "ClusterRoleBinding/servescope-gateway", "Deployment/servescope-gateway",
			"Service/servescope-gateway", "NetworkPolicy/servescope-gateway", "ScaledObject/vllm-llama-8b",
		},
	}
	got := map[string][]string{}
	for _, o := range objects {
		got[o.source] = append(got[o.source], o.kind+"/"+o.name)
	}
	for source, kinds := range want {
		// Helm orders a release's objects by kind; compare as sets.
		slices.Sort(kinds)
		slices.Sort(got[source])
		if !slices.Equal(got[source], kinds) {
			t.Errorf("%s holds %v, want %v", source, got[source], kinds)
		}
	}
	for source := range got {
		if _, ok := want[source]; !ok {
			t.Errorf("%s is not covered by this test: add what it holds", source)
		}
	}
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	// The decoders must fail on a misspelt field, or the test above proves nothing.
	deployment := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n"
	if _, _, err := strictDecoder.Decode([]byte(deployment), nil, nil); err == nil {
		t.Error("a Deployment with spec.replica decoded")
	}
	so := "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: x}\n  maxReplicas: 3\n"
	if err := yaml.UnmarshalStrict([]byte(so), &scaledObject{}); err == nil {
		t.Error("a ScaledObject with spec.maxReplicas decoded")
	}
	cr := "apiVersion: opentelemetry.io/v1beta1\nkind: OpenTelemetryCollector\nmetadata: {name: x}\nspec:\n  mode: sidecar\n  configs: {}\n"
	if err := yaml.UnmarshalStrict([]byte(cr), &openTelemetryCollector{}); err == nil {
		t.Error("an OpenTelemetryCollector with spec.configs decoded")
	}
	// A misspelt field inside an embedded pod template fails as it would in a Deployment.
	rs := "apiVersion: ray.io/v1\nkind: RayService\nmetadata: {name: x}\nspec:\n  rayClusterConfig:\n    headGroupSpec: {rayStartParams: {}, template: {spec: {containers: []}}}\n" +
		"    workerGroupSpecs:\n      - {groupName: g, rayStartParams: {}, template: {spec: {containers: [{name: c, image: i, volumeMount: []}]}}}\n"
	if err := yaml.UnmarshalStrict([]byte(rs), &rayService{}); err == nil {
		t.Error("a RayService with a worker container's volumeMount decoded")
	}
	is := "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec:\n  predictor:\n    containers: [{name: c, image: i}]\n    shareProcessNamspace: true\n"
	if err := yaml.UnmarshalStrict([]byte(is), &inferenceService{}); err == nil {
		t.Error("an InferenceService with predictor.shareProcessNamspace decoded")
	}
}

// collectorConfig is one configuration a manifest, the chart or the image hands the collector, with the
// environment the pod gives it.
type collectorConfig struct {
	name string
	yaml []byte
	env  []corev1.EnvVar
}

// embeddedConfigs extracts every collector configuration: the ConfigMaps' config.yaml, the CRs' config,
// and the image's baked-in default.
func embeddedConfigs(t *testing.T, objects []object) []collectorConfig {
	t.Helper()
	// The environment of the container that mounts each ConfigMap, by namespace/name of the ConfigMap.
	envOf := map[string][]corev1.EnvVar{}
	for _, o := range objects {
		for _, c := range servescopeContainers(o) {
			for _, v := range c.pod.Volumes {
				if v.ConfigMap != nil {
					envOf[o.source+"|"+v.ConfigMap.Name] = c.container.Env
				}
			}
		}
	}
	var configs []collectorConfig
	for _, o := range objects {
		switch typed := o.typed.(type) {
		case *corev1.ConfigMap:
			text, ok := typed.Data["config.yaml"]
			if !ok {
				t.Errorf("%s: ConfigMap %s has no config.yaml", o.source, o.name)
				continue
			}
			configs = append(configs, collectorConfig{name: o.source + ": ConfigMap " + o.name, yaml: []byte(text), env: envOf[o.source+"|"+o.name]})
		case *openTelemetryCollector:
			text, err := yaml.Marshal(typed.Spec.Config)
			if err != nil {
				t.Fatal(err)
			}
			configs = append(configs, collectorConfig{name: o.source + ": OpenTelemetryCollector " + o.name, yaml: text, env: typed.Spec.Env})
		}
	}
	baked := readDockerfile(t).copiedConfig
	image, err := os.ReadFile(filepath.Join("..", baked))
	if err != nil {
		t.Fatal(err)
	}
	configs = append(configs, collectorConfig{name: "the image's config (" + baked + ")", yaml: image})
	return configs
}

// podEnvironment is the environment the kubelet would give a container: downward-API fields as a pod on a
// node has them, $(VAR) references to earlier variables expanded.
func podEnvironment(t *testing.T, vars []corev1.EnvVar) []string {
	t.Helper()
	fields := map[string]string{"status.podIP": "10.4.0.17", "status.hostIP": "10.0.0.5", "metadata.name": "vllm-llama-8b-5f7d9-abcde", "metadata.namespace": "llm"}
	known := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var env []string
	for _, v := range vars {
		value := v.Value
		if v.ValueFrom != nil {
			if v.ValueFrom.FieldRef == nil {
				t.Fatalf("%s: only fieldRef is simulated here", v.Name)
			}
			var ok bool
			if value, ok = fields[v.ValueFrom.FieldRef.FieldPath]; !ok {
				t.Fatalf("%s: field %s is not simulated", v.Name, v.ValueFrom.FieldRef.FieldPath)
			}
		}
		value = ref.ReplaceAllStringFunc(value, func(m string) string {
			name := ref.FindStringSubmatch(m)[1]
			resolved, ok := known[name]
			if !ok {
				t.Errorf("%s refers to %s, which is not defined before it", v.Name, name)
			}
			return resolved
		})
		known[v.Name] = value
		env = append(env, v.Name+"="+value)
	}
	return env
}

func TestEmbeddedConfigsValidateOnTheBinary(t *testing.T) {
	binary := os.Getenv("SERVESCOPE_BIN")
	if binary == "" {
		t.Skip("SERVESCOPE_BIN is not set: `make deploy-test` builds the collector and runs this with it")
	}
	configs := embeddedConfigs(t, allObjects(t))
	// kubernetes/: the sidecar's ConfigMap, the Operator's CR, the gateway's ConfigMap, the KubeRay and KServe
	// sidecars' ConfigMaps; the chart's sidecar ConfigMap and CR and its gateway ConfigMap; the image's.
	if len(configs) != 9 {
		names := make([]string, len(configs))
		for i, c := range configs {
			names[i] = c.name
		}
		t.Fatalf("found %d configurations, want 9: %v", len(configs), names)
	}
	dir := t.TempDir()
	for i, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", i))
			if err := os.WriteFile(path, c.yaml, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, "validate", "--config="+path)
			// Only the pod's variables: nothing of this machine's leaks into the check.
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, podEnvironment(t, c.env)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("validate: %v\n%s\n--- config ---\n%s", err, out, c.yaml)
			}
		})
	}
}

func TestValidationCatchesABrokenConfig(t *testing.T) {
	// validate must reject what the collector would refuse to start with, or the test above proves nothing.
	binary := os.Getenv("SERVESCOPE_BIN")
	if binary == "" {
		t.Skip("SERVESCOPE_BIN is not set: `make deploy-test` builds the collector and runs this with it")
	}
	path := filepath.Join(t.TempDir(), "broken.yaml")
	broken := "receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {llm_signals: {interval: 0s}}\n" +
		"exporters: {nop: {}}\nservice: {pipelines: {metrics: {receivers: [otlp], exporters: [llm_signals]}, " +
		"metrics/out: {receivers: [llm_signals], exporters: [nop]}}}\n"
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary, "validate", "--config="+path).CombinedOutput(); err == nil {
		t.Fatalf("validate accepted llm_signals with interval 0s:\n%s", out)
	}
}

// The two routes to a sidecar run the same collector: the plain sidecar's ConfigMap and the Operator's CR
// hold one configuration, in kubernetes/ and in the chart.
func TestSidecarRoutesShareOneConfig(t *testing.T) {
	objects := allObjects(t)
	for _, source := range [][2]string{
		{"kubernetes/sidecar/configmap.yaml", "kubernetes/operator/opentelemetrycollector.yaml"},
		{"chart (sidecar)", "chart (sidecar)"},
	} {
		var fromConfigMap, fromCR any
		for _, o := range objects {
			switch typed := o.typed.(type) {
			case *corev1.ConfigMap:
				if o.source == source[0] {
					if err := yaml.Unmarshal([]byte(typed.Data["config.yaml"]), &fromConfigMap); err != nil {
						t.Fatal(err)
					}
				}
			case *openTelemetryCollector:
				if o.source == source[1] {
					fromCR = typed.Spec.Config
				}
			}
		}
		a, _ := yaml.Marshal(fromConfigMap)
		b, _ := yaml.Marshal(fromCR)
		if fromConfigMap == nil || fromCR == nil || !bytes.Equal(a, b) {
			t.Errorf("%s and %s configure the sidecar differently:\n%s", source[0], source[1], lineDiff(string(a), string(b)))
		}
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n- %s\n+ %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

var commentLine = regexp.MustCompile(`(?m)^\s*#.*$`)

func stripComments(doc []byte) []byte { return commentLine.ReplaceAll(doc, nil) }
