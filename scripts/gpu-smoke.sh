#!/usr/bin/env bash
# GPU smoke test for the nvml receiver, for a node with an NVIDIA driver.
# Runs otelcol-servescope for 20 s with the nvml receiver and the file exporter, then checks that every GPU
# nvidia-smi lists reported utilization, memory and power, and that memory and power agree with
# `nvidia-smi --query-gpu` within tolerance. Needs only the binary, the driver (nvidia-smi) and a shell
# with awk/grep. Prints one verdict line: "gpu-smoke: PASS ..." or "gpu-smoke: FAIL ...".
#   usage: scripts/gpu-smoke.sh [path/to/otelcol-servescope]
# Set GPU_SMOKE_KEEP=<dir> to keep the collector's output (metrics.jsonl, collector.log, smi.csv) for review.
set -u
bin=${1:-bin/otelcol-servescope}
if [ ! -x "$bin" ]; then
  echo "building $bin"; make build >/dev/null || { echo "gpu-smoke: FAIL cannot build $bin"; exit 1; }
fi
command -v nvidia-smi >/dev/null || { echo "gpu-smoke: FAIL nvidia-smi not found (no driver?)"; exit 1; }
work=$(mktemp -d)
keep_output() { [ -n "${GPU_SMOKE_KEEP:-}" ] && mkdir -p "$GPU_SMOKE_KEEP" && cp "$work"/*.jsonl "$work"/*.log "$work"/*.csv "$GPU_SMOKE_KEEP"/ 2>/dev/null; rm -rf "$work"; }
trap keep_output EXIT
cat > "$work/config.yaml" <<YAML
receivers:
  nvml:
    collection_interval: 2s
    required: true
exporters:
  file:
    path: $work/metrics.jsonl
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [nvml]
      exporters: [file, debug]
YAML
"$bin" --config "$work/config.yaml" > "$work/collector.log" 2>&1 &
pid=$!
sleep 20
kill -TERM "$pid" 2>/dev/null; wait "$pid"; status=$?
nvidia-smi --query-gpu=uuid,memory.used,power.draw --format=csv,noheader,nounits > "$work/smi.csv"

fail=0; checked=0
# Pull "<uuid> <metric> <value>" triples out of the OTLP JSON lines (one resource per GPU).
awk '
  { n = split($0, parts, "\"resource\":") }
  { for (i = 2; i <= n; i++) {
      r = parts[i]
      if (match(r, /"hw\.id","value":\{"stringValue":"[^"]+"/) == 0) continue
      uuid = substr(r, RSTART, RLENGTH); sub(/.*"stringValue":"/, "", uuid); sub(/"$/, "", uuid)
      m = split(r, metrics, "\"name\":\"")
      for (j = 2; j <= m; j++) {
        name = metrics[j]; sub(/".*/, "", name)
        if (match(metrics[j], /"asDouble":[-0-9.eE+]+/) == 0) continue
        v = substr(metrics[j], RSTART + 11, RLENGTH - 11)
        print uuid, name, v
      }
  } }' "$work/metrics.jsonl" > "$work/values.txt" 2>/dev/null

while IFS=', ' read -r uuid mem_mib power_w; do
  checked=$((checked + 1))
  for name in hw.gpu.utilization hw.gpu.memory.usage hw.power; do
    grep -q "^$uuid $name " "$work/values.txt" || { echo "missing $name for $uuid"; fail=1; }
  done
  got_mem=$(grep "^$uuid hw.gpu.memory.usage " "$work/values.txt" | tail -1 | awk '{print $3}')
  got_pow=$(grep "^$uuid hw.power " "$work/values.txt" | tail -1 | awk '{print $3}')
  # memory within 5% or 512 MiB (processes come and go); power within 25% or 30 W (it moves by the second)
  awk -v got="${got_mem:-0}" -v want="$mem_mib" 'BEGIN { g = got / 1048576; d = g - want; if (d < 0) d = -d; exit !(d <= 512 || d <= 0.05 * want) }' \
    || { echo "memory for $uuid: nvml ${got_mem:-none} B, nvidia-smi $mem_mib MiB"; fail=1; }
  if [ "$power_w" != "[N/A]" ]; then
    awk -v got="${got_pow:-0}" -v want="$power_w" 'BEGIN { d = got - want; if (d < 0) d = -d; exit !(d <= 30 || d <= 0.25 * want) }' \
      || { echo "power for $uuid: nvml ${got_pow:-none} W, nvidia-smi $power_w W"; fail=1; }
  fi
done < "$work/smi.csv"

if [ "$status" -ne 0 ]; then echo "collector exited with $status:"; tail -20 "$work/collector.log"; fail=1; fi
if [ "$checked" -eq 0 ]; then echo "gpu-smoke: FAIL nvidia-smi lists no GPU"; exit 1; fi
if [ "$fail" -eq 0 ]; then
  echo "gpu-smoke: PASS $checked GPU(s): utilization, memory and power reported; memory and power agree with nvidia-smi"
else
  echo "gpu-smoke: FAIL see the lines above"; exit 1
fi
