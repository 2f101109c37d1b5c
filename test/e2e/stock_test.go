package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// Every documented configuration validates against the built binary.
func TestExampleConfigsValidate(t *testing.T) {
	configs, err := filepath.Glob("../../config/examples/*.yaml")
	require.NoError(t, err)
	configs = append(configs, "../../config/default.yaml")
	require.Greater(t, len(configs), 5)
	for _, path := range configs {
		t.Run(filepath.Base(path), func(t *testing.T) {
			out, err := exec.Command(binary, "validate", "--config", path).CombinedOutput()
			assert.NoError(t, err, string(out))
		})
	}
}

// Every complete configuration in a component's README (a yaml block with a service section) validates too.
func TestReadmeExamplesValidate(t *testing.T) {
	readmes, err := filepath.Glob("../../*/*/README.md")
	require.NoError(t, err)
	blocks := 0
	for _, readme := range readmes {
		text, err := os.ReadFile(readme)
		require.NoError(t, err)
		for i, block := range strings.Split(string(text), "```yaml\n")[1:] {
			block = block[:strings.Index(block, "```")]
			if !strings.Contains(block, "\nservice:") {
				continue
			}
			blocks++
			name := fmt.Sprintf("%s#%d", filepath.Base(filepath.Dir(readme)), i)
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "config.yaml")
				require.NoError(t, os.WriteFile(path, []byte(block), 0o600))
				out, err := exec.Command(binary, "validate", "--config", path).CombinedOutput()
				assert.NoError(t, err, string(out))
			})
		}
	}
	require.Greater(t, blocks, 5, "the component READMEs carry working examples")
}

// The stock components bundled at an older release than core (see README) run, not only link: one pipeline
// uses each of them and the output shows each one's effect.
func TestOlderStockComponentsRun(t *testing.T) {
	srv := engine(t, fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"))
	out := filepath.Join(t.TempDir(), "metrics.jsonl")
	config := fmt.Sprintf(`
receivers:
  host_metrics:
    collection_interval: 300ms
    scrapers:
      memory: {}
  vllm:
    endpoint: %s
    collection_interval: 300ms
processors:
  k8s_attributes:
    passthrough: true
  llm_normalize: {}
  attributes:
    actions:
      - {key: deployment.tier, value: sidecar, action: insert}
  transform:
    metric_statements:
      - context: datapoint
        statements: ['set(attributes["transformed"], "yes")']
  filter:
    metrics:
      metric:
        - 'name == "%s"'
  cumulative_to_delta: {}
exporters:
  file:
    path: %s
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [host_metrics, vllm]
      processors: [k8s_attributes, llm_normalize, attributes, transform, filter, cumulative_to_delta]
      exporters: [file]
`, srv.URL, schema.MetricLLMEngineUp, out)
	startCollector(t, config)

	seen := map[string]pmetric.Metric{}
	require.Eventually(t, func() bool {
		for _, md := range readJSONLines(out) {
			for _, name := range []string{"system.memory.usage", schema.MetricLLMTokensPrompt, schema.MetricLLMEngineUp} {
				if ms := find(md, name); len(ms) > 0 {
					seen[name] = ms[0]
				}
			}
		}
		_, hostOK := seen["system.memory.usage"]
		_, promptOK := seen[schema.MetricLLMTokensPrompt]
		return hostOK && promptOK
	}, 30*time.Second, 200*time.Millisecond, "host_metrics and vllm data reach the file exporter")

	prompt := seen[schema.MetricLLMTokensPrompt]
	assert.Equal(t, pmetric.AggregationTemporalityDelta, prompt.Sum().AggregationTemporality(), "cumulative_to_delta ran")
	attrs := prompt.Sum().DataPoints().At(0).Attributes().AsRaw()
	assert.Equal(t, "sidecar", attrs["deployment.tier"], "attributes ran")
	assert.Equal(t, "yes", attrs["transformed"], "transform ran")
	assert.NotContains(t, seen, schema.MetricLLMEngineUp, "filter ran")
}

func readJSONLines(path string) []pmetric.Metrics {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []pmetric.Metrics
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var um pmetric.JSONUnmarshaler
	for sc.Scan() {
		md, err := um.UnmarshalMetrics(sc.Bytes())
		if err != nil {
			continue // a line still being written
		}
		out = append(out, md)
	}
	return out
}
