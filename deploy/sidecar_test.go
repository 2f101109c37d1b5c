package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The slim sidecar build (builder-config-sidecar.yaml, bin/otelcol-servescope-sidecar) and its image: the
// Dockerfile's sidecar stage, which the KubeRay and KServe examples and the chart's sidecar.slim run.

// slimImage is how a manifest names the slim sidecar's image.
const slimImage = "/otelcol-servescope-sidecar:"

// renderChartValues renders the chart with these values, as `helm template` would.
func renderChartValues(release, namespace string, values map[string]any) (string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return "", err
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = release
	install.Namespace = namespace
	install.Replace = true
	rel, err := install.Run(chrt, values)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		return "", fmt.Errorf("rendering gave a %T, not a v1 release", rel)
	}
	return r.Manifest, nil
}

var slimChartValues = map[string]any{"mode": "sidecar", "sidecar": map[string]any{"slim": true}, "endpoints": map[string]any{"dcgm": ""}}

// The sidecar image is the slim binary `make build` writes, laid out as the full image is: a manifest
// switches between the two by the image alone.
func TestSidecarImageIsTheSlimBuild(t *testing.T) {
	slim, full := readDockerfileStage(t, "sidecar"), readDockerfile(t)
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	bin := regexp.MustCompile(`(?m)^SIDECAR_BIN\s*:=\s*(\S+)$`).FindSubmatch(makefile)
	if bin == nil {
		t.Fatal("no SIDECAR_BIN := in the Makefile")
	}
	if !regexp.MustCompile(`(?m)^build:\n(\t.*\n)*\t.*-o \$\(SIDECAR_BIN\) \./cmd/otelcol-servescope-sidecar\n`).Match(makefile) {
		t.Error("make build does not build $(SIDECAR_BIN) from ./cmd/otelcol-servescope-sidecar")
	}
	if want := "/src/" + string(bin[1]); slim.copiedBinary != want {
		t.Errorf("the sidecar image copies %q from the build stage, make build writes %q", slim.copiedBinary, want)
	}
	if !slices.Equal(slim.entrypoint, full.entrypoint) || !slices.Equal(slim.cmd, full.cmd) || slim.user != full.user || !slices.Equal(slim.exposed, full.exposed) {
		t.Errorf("the sidecar image runs differently from the full one: %+v, %+v", slim, full)
	}
	if slim.copiedConfig == "" {
		t.Error("the sidecar image bakes in no configuration")
	}
}

// slimConfigs are the configurations the slim image is handed: the ConfigMaps mounted by containers running
// it, the OpenTelemetryCollector CRs naming it, and the image's own.
func slimConfigs(t *testing.T, objects []object) []collectorConfig {
	t.Helper()
	// A pod's ConfigMap is in its namespace and of its origin: kubernetes/ (another file there) or the same
	// chart render.
	origin := func(o object) string {
		if strings.HasPrefix(o.source, "kubernetes/") {
			return "kubernetes/"
		}
		return o.source
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objects {
		if cm, ok := o.typed.(*corev1.ConfigMap); ok {
			configMaps[origin(o)+"|"+cm.Namespace+"/"+cm.Name] = cm
		}
	}
	var configs []collectorConfig
	for _, o := range objects {
		if cr, ok := o.typed.(*openTelemetryCollector); ok && strings.Contains(cr.Spec.Image, slimImage) {
			text, err := yaml.Marshal(cr.Spec.Config)
			if err != nil {
				t.Fatal(err)
			}
			configs = append(configs, collectorConfig{name: o.source + ": OpenTelemetryCollector " + o.name, yaml: text, env: cr.Spec.Env})
		}
		for _, c := range servescopeContainers(o) {
			if !strings.Contains(c.container.Image, slimImage) {
				continue
			}
			for _, v := range c.pod.Volumes {
				if v.ConfigMap == nil {
					continue
				}
				cm := configMaps[origin(o)+"|"+namespaceOf(o)+"/"+v.ConfigMap.Name]
				if cm == nil {
					t.Errorf("%s: %s mounts ConfigMap %s, which is not there", o.source, o.name, v.ConfigMap.Name)
					continue
				}
				configs = append(configs, collectorConfig{name: o.source + ": " + o.name + " with ConfigMap " + cm.Name, yaml: []byte(cm.Data["config.yaml"]), env: c.container.Env})
			}
		}
	}
	image, err := os.ReadFile(filepath.Join("..", readDockerfileStage(t, "sidecar").copiedConfig))
	if err != nil {
		t.Fatal(err)
	}
	return append(configs, collectorConfig{name: "the sidecar image's config", yaml: image})
}

// namespaceOf is the namespace of an object that embeds pods.
func namespaceOf(o object) string {
	switch typed := o.typed.(type) {
	case *appsv1.Deployment:
		return typed.Namespace
	case *rayService:
		return typed.Namespace
	case *inferenceService:
		return typed.Namespace
	default:
		return ""
	}
}

func TestSlimSidecarConfigsValidateOnTheSlimBinary(t *testing.T) {
	binary := os.Getenv("SERVESCOPE_SIDECAR_BIN")
	if binary == "" {
		t.Skip("SERVESCOPE_SIDECAR_BIN is not set: `make deploy-test` builds the slim sidecar and runs this with it")
	}
	rendered, err := renderChartValues("servescope-sidecar", "llm", slimChartValues)
	if err != nil {
		t.Fatal(err)
	}
	objects := append(allObjects(t), decodeStrictly(t, "chart (slim sidecar)", []byte(rendered))...)
	configs := slimConfigs(t, objects)
	// The KubeRay workers' and the KServe predictor's ConfigMaps, the slim chart's CR (its ConfigMap is
	// mounted by a container NOTES.txt prints, not rendered), and the image's.
	if len(configs) != 4 {
		names := make([]string, len(configs))
		for i, c := range configs {
			names[i] = c.name
		}
		t.Fatalf("found %d configurations for the slim image, want 4: %v", len(configs), names)
	}
	dir := t.TempDir()
	for i, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("slim-%d.yaml", i))
			if err := os.WriteFile(path, c.yaml, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, "validate", "--config="+path)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, podEnvironment(t, c.env)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("validate: %v\n%s\n--- config ---\n%s", err, out, c.yaml)
			}
		})
	}
	// The slim binary refuses what it lacks, or the check above proves nothing: the plain sidecar's
	// configuration scrapes dcgm-exporter with the prometheus receiver.
	for _, o := range allObjects(t) {
		if cm, ok := o.typed.(*corev1.ConfigMap); ok && o.source == "kubernetes/sidecar/configmap.yaml" {
			path := filepath.Join(dir, "full-only.yaml")
			if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(binary, "validate", "--config="+path).CombinedOutput(); err == nil || !strings.Contains(string(out), "prometheus") {
				t.Errorf("the slim binary accepted the prometheus receiver: %v\n%s", err, out)
			}
		}
	}
}

// The chart's slim sidecar names the slim image, reads GPUs through NVML and refuses dcgm-exporter, which it
// cannot scrape.
func TestChartSlimSidecar(t *testing.T) {
	rendered, err := renderChartValues("servescope-sidecar", "llm", slimChartValues)
	if err != nil {
		t.Fatal(err)
	}
	crs := 0
	for _, o := range decodeStrictly(t, "chart (slim sidecar)", []byte(rendered)) {
		cr, ok := o.typed.(*openTelemetryCollector)
		if !ok {
			continue
		}
		crs++
		if !strings.HasPrefix(cr.Spec.Image, "servescope/otelcol-servescope-sidecar:") {
			t.Errorf("the slim sidecar's image is %s", cr.Spec.Image)
		}
		receivers, _ := cr.Spec.Config["receivers"].(map[string]any)
		if _, ok := receivers["nvml"]; !ok {
			t.Errorf("the slim sidecar reads no GPUs: receivers %v", receivers)
		}
	}
	if crs != 1 {
		t.Errorf("found %d OpenTelemetryCollectors, want 1", crs)
	}
	_, err = renderChartValues("servescope-sidecar", "llm", map[string]any{"mode": "sidecar", "sidecar": map[string]any{"slim": true}})
	if err == nil || !strings.Contains(err.Error(), "sidecar.slim") {
		t.Errorf("a slim sidecar with dcgm-exporter should stop the render, got %v", err)
	}
}
