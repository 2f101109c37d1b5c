#!/usr/bin/env bash
# Records what `servescope compare` and `servescope replay` read: the explained request spans of a
# simulated scenario, written by the collector binary's stock file exporter with
# config/examples/keep-explained-spans.yaml. Real time: a scenario of D seconds takes about D + 15 seconds.
#
#   scripts/record-explained-spans.sh SCENARIO OUT.jsonl [simulator flags...]
#   scripts/record-explained-spans.sh traffic_spike spike.jsonl -duration 60s -seed 7
#   REPLICAS=2 scripts/record-explained-spans.sh traffic_spike spike2.jsonl -duration 60s -drain 120s
# REPLICAS simulated vLLM replicas (default 1), each scraped by a vllm receiver of its own.
set -euo pipefail
scenario=${1:?scenario}; out=${2:?output file}; shift 2
cd "$(dirname "$0")/.."
make --no-print-directory build >/dev/null
go build -o bin/servescope-sim ./cmd/servescope-sim

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
base=$(port); otlp=127.0.0.1:$(port)
replicas=${REPLICAS:-1}
# Replica i serves on base+2i (the simulator's -base-port rule); receivers beyond the first are added here.
extra=(); names=vllm
for ((i = 1; i < replicas; i++)); do
  extra+=(--set "receivers::vllm/$i::endpoint=http://127.0.0.1:$((base + 2 * i))" --set "receivers::vllm/$i::collection_interval=1s")
  names+=",vllm/$i"
done
rm -f "$out"
SERVESCOPE_VLLM_ENDPOINT=http://127.0.0.1:$base SERVESCOPE_OTLP_HTTP_ENDPOINT=$otlp SERVESCOPE_SPANS_FILE=$out \
  ./bin/otelcol-servescope --config config/examples/keep-explained-spans.yaml \
  --set service.telemetry.metrics.level=none "${extra[@]}" --set "service::pipelines::metrics::receivers=[$names]" \
  >/dev/null 2>"$out.collector.log" &
collector=$!
trap 'kill $collector 2>/dev/null || true' EXIT
sleep 2
./bin/servescope-sim -scenario "$scenario" -base-port "$base" -otlp-endpoint "http://$otlp" -status-every 0 \
  -replicas "$replicas" -engines vllm "$@" >/dev/null
sleep 5 # the connector's wait for state after a span's end, and the exporter's flush
kill -TERM $collector; wait $collector || true
rm -f "$out.collector.log"
echo "$(wc -l <"$out") batches of explained spans in $out"
