#!/usr/bin/env bash
# Footprint of the two builds running the same sidecar configuration (config/examples/sidecar-slim.yaml)
# against a stand-in engine: servescope-sim's simulated vLLM replica, scraped every 10 s (the default), its
# request spans sent to the sidecar's OTLP/HTTP receiver or not, and an OTLP sink in the gateway's place (the
# full build running otlp -> nop, not measured). For each binary and each run, after WAIT seconds: VmRSS,
# RssAnon and RssFile from /proc/PID/status, the process's CPU seconds (utime+stime) since it started, and,
# with spans, the spans its otlp receiver accepted per second over the run (its own otelcol_receiver_*
# counter). No GPU is needed: without NVML the nvml receiver warns once and idles.
#   usage: scripts/sidecar-footprint.sh [runs] [wait seconds] [idle|spans]
# Prints one Markdown row per run.
set -u
runs=${1:-3}
wait_s=${2:-20}
load=${3:-idle}
full=bin/otelcol-servescope
slim=bin/otelcol-servescope-sidecar
for b in "$full" "$slim"; do [ -x "$b" ] || { echo "run make build first ($b missing)"; exit 1; }; done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/sink.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:24317}}}}
exporters: {nop: {}}
service:
  telemetry: {metrics: {level: none}}
  pipelines:
    metrics: {receivers: [otlp], exporters: [nop]}
    traces: {receivers: [otlp], exporters: [nop]}
    logs: {receivers: [otlp], exporters: [nop]}
YAML
"$full" --config="$work/sink.yaml" >"$work/sink.log" 2>&1 &
pids+=($!)

otlp_flag=()
if [ "$load" = spans ]; then otlp_flag=(-otlp-endpoint http://127.0.0.1:24318); fi
go build -o "$work/sim" ./cmd/servescope-sim || exit 1
"$work/sim" -replicas 1 -engines vllm -base-port 28000 -duration 1h -status-every 0 "${otlp_flag[@]}" >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
sleep 2

ticks=$(getconf CLK_TCK)
cpu_seconds() { awk -v t="$ticks" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
accepted() { curl -s "http://127.0.0.1:28888/metrics" | awk '/^otelcol_receiver_accepted_spans/ { s += $NF } END { print s + 0 }'; }

echo "| binary | run | VmRSS MiB | RssAnon MiB | RssFile MiB | CPU s over ${wait_s} s | spans/s |"
echo "|---|---|---|---|---|---|---|"
for b in "$full" "$slim"; do
  for run in $(seq "$runs"); do
    rm -rf "$work/queue"
    SERVESCOPE_ENGINE_ENDPOINT=http://127.0.0.1:28000 SERVESCOPE_ENGINE_PORT=28000 SERVESCOPE_REPLICA=127.0.0.1:28000 \
    SERVESCOPE_QUEUE_DIR="$work/queue" SERVESCOPE_GATEWAY=127.0.0.1:24317 SERVESCOPE_HEALTH_ENDPOINT=127.0.0.1:23133 \
    SERVESCOPE_OTLP_GRPC_ENDPOINT=127.0.0.1:24319 SERVESCOPE_OTLP_HTTP_ENDPOINT=127.0.0.1:24318 SERVESCOPE_TELEMETRY_PORT=28888 \
      "$b" --config=config/examples/sidecar-slim.yaml >"$work/sidecar.log" 2>&1 &
    pid=$!
    sleep 3
    before=$(accepted)
    sleep $((wait_s - 3))
    after=$(accepted)
    rss=$(status_kib "$pid" VmRSS); anon=$(status_kib "$pid" RssAnon); file=$(status_kib "$pid" RssFile)
    cpu=$(cpu_seconds "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null
    awk -v b="$b" -v r="$run" -v rss="$rss" -v anon="$anon" -v file="$file" -v cpu="$cpu" -v n=$((after - before)) -v w=$((wait_s - 3)) \
      'BEGIN { printf "| %s | %d | %.1f | %.1f | %.1f | %.2f | %.0f |\n", b, r, rss/1024, anon/1024, file/1024, cpu, n/w }'
  done
done
