#!/usr/bin/env bash
# NCCL smoke test for the nccl receiver, for a machine with NVIDIA GPU(s), a CUDA build of PyTorch and an
# NCCL of 2.28.3 or later (PyTorch's own, from its nvidia-nccl wheel, is what gets used).
#
# It starts otelcol-servescope (nccl receiver -> file exporter), runs a short torch.distributed all-reduce
# loop over every GPU with the NCCL Inspector plugin loaded (rank N-1 made 3 ms late each step), then checks:
# every record the Inspector wrote was counted exactly once, and with 2+ GPUs the late rank was named. With
# one GPU NCCL runs single-rank collectives as local copies that no profiler sees, so the loop adds
# self send/recv pairs through libnccl (ctypes), which do go through NCCL's kernels and the Inspector.
# Prints one verdict line: "nccl-smoke: PASS ..." or "nccl-smoke: FAIL ..." (exit 1), or on one GPU whose
# Inspector wrote nothing "nccl-smoke: INCONCLUSIVE ..." (exit 3): the acceptance run needs 2+ GPUs.
#
#   usage: scripts/nccl-smoke.sh (--plugin PATH | --nccl-src DIR) [--bin PATH] [--steps N]
#     --plugin PATH    a prebuilt libnccl-profiler-inspector.so (NCCL 2.28.3+ source)
#     --nccl-src DIR   NCCL's source tree, or just its plugins/profiler/inspector (ext-profiler/inspector in
#                      2.28) directory: the plugin is built here with g++ against CUDA headers from
#                      $CUDA_HOME, /usr/local/cuda, or the nvidia-cuda-runtime wheel PyTorch installed.
#                      No network is needed. The plugin's source version sets the record format; any
#                      NCCL >= 2.28.3 loads it (profiler API v5).
#     --bin PATH       the collector (default bin/otelcol-servescope; built with make if missing)
#     --steps N        all-reduce steps (default 200)
# Needs: nvidia-smi, python3 with torch (CUDA), g++ (only with --nccl-src). NCCL_SMOKE_KEEP=<dir> keeps
# the Inspector files, the collector's output and logs for review.
set -u
bin=bin/otelcol-servescope plugin="" src="" steps=200
while [ $# -gt 0 ]; do
  case "$1" in
    --plugin) plugin=$2; shift 2 ;;
    --nccl-src) src=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *) echo "usage: $0 (--plugin PATH | --nccl-src DIR) [--bin PATH] [--steps N]"; exit 2 ;;
  esac
done
fail() { echo "nccl-smoke: FAIL $*"; exit 1; }
[ -n "$plugin$src" ] || fail "give --plugin <libnccl-profiler-inspector.so> or --nccl-src <NCCL source tree> (this machine needs no network for either)"
if [ ! -x "$bin" ]; then
  make build >/dev/null 2>&1 || fail "no collector at $bin and make build failed"
fi
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found (no NVIDIA driver)"
command -v python3 >/dev/null || fail "python3 not found"

work=$(mktemp -d)
cleanup() {
  [ -n "${colpid:-}" ] && kill -TERM "$colpid" 2>/dev/null
  if [ -n "${NCCL_SMOKE_KEEP:-}" ]; then mkdir -p "$NCCL_SMOKE_KEEP" && cp -r "$work"/. "$NCCL_SMOKE_KEEP"/; fi
  rm -rf "$work"
}
trap cleanup EXIT

# PyTorch, its GPUs and its NCCL.
read -r ngpu ncclv torchv < <(python3 -c '
import torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
v = torch.cuda.nccl.version() if n else "none"
if isinstance(v, int):  # older torch: major*10000 + minor*100 + patch
    v = (v // 10000, v // 100 % 100, v % 100)
v = ".".join(map(str, v)) if n else v
print(n, v, torch.__version__)' 2>"$work/torch.err") || fail "python3 cannot import torch: $(tail -1 "$work/torch.err")"
[ "${ngpu:-0}" -gt 0 ] || fail "PyTorch sees no GPU (torch $torchv)"
python3 -c "import sys; v=tuple(map(int,'$ncclv'.split('.'))); sys.exit(v < (2,28,3))" ||
  fail "PyTorch's NCCL is $ncclv; the Inspector needs NCCL 2.28.3 or later (profiler API v5)"

# The plugin: given, or built from the source tree.
if [ -z "$plugin" ]; then
  dir=""
  for d in "$src/plugins/profiler/inspector" "$src/ext-profiler/inspector" "$src"; do
    [ -f "$d/inspector_plugin.cc" ] && { dir=$d; break; }
  done
  [ -n "$dir" ] || fail "no inspector_plugin.cc under $src (expected plugins/profiler/inspector or ext-profiler/inspector)"
  command -v g++ >/dev/null || fail "g++ is needed to build the plugin from $dir"
  inc=""
  for d in "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include \
           "$(python3 -c 'import nvidia.cuda_runtime as m; print(m.__path__[0])' 2>/dev/null)/include"; do
    [ -f "$d/cuda.h" ] && [ -f "$d/cuda_runtime.h" ] && { inc=$d; break; }
  done
  [ -n "$inc" ] || fail "no CUDA headers (cuda.h, cuda_runtime.h): set CUDA_HOME or install the nvidia-cuda-runtime wheel"
  cudart=$(ls "$inc"/../lib64/libcudart.so* "$inc"/../lib/libcudart.so* 2>/dev/null | head -1)
  [ -n "$cudart" ] || fail "no libcudart.so next to $inc"
  mkdir -p "$work/build" && cp -r "$dir"/. "$work/build"/
  printf '#ifdef __cplusplus\nextern "C" {\n#endif\nconst char* get_git_version_info() { return "nccl-smoke"; }\n#ifdef __cplusplus\n}\n#endif\n' > "$work/build/version.cc"
  ( cd "$work/build" && ls *.cc | xargs -P 8 -I{} g++ -std=c++17 -fPIC -O2 -I"$inc" -I. -Inccl -c {} -o {}.o &&
    g++ -shared -o libnccl-profiler-inspector.so *.o "$cudart" -ldl -lpthread -Wl,-rpath,"$(dirname "$cudart")" ) \
    > "$work/build.log" 2>&1 || fail "building the plugin failed: $(grep -m1 -i error "$work/build.log")"
  plugin=$work/build/libnccl-profiler-inspector.so
fi
[ -f "$plugin" ] || fail "no plugin at $plugin"

# The collector, running while the workload does so that it can ask NVML for each process' GPU.
mkdir -p "$work/inspector"
cat > "$work/config.yaml" <<YAML
receivers:
  nccl:
    include: [$work/inspector/*]
    collection_interval: 1s
    skew: {min_skew: 500us}
    replicas:
      - files: $work/inspector/*
        service_instance_id: smoke:0
        tensor_parallel_size: $ngpu
        all_reduce: nccl
exporters:
  file:
    path: $work/metrics.jsonl
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [nccl]
      exporters: [file]
YAML
"$bin" --config "$work/config.yaml" > "$work/collector.log" 2>&1 &
colpid=$!

cat > "$work/workload.py" <<'PY'
import ctypes, os, sys, time
import torch, torch.distributed as dist, torch.multiprocessing as mp

def self_sendrecv(steps):
    # One rank sending to itself: a p2p kernel NCCL runs and profiles even in a one-rank communicator.
    nccl = ctypes.CDLL("libnccl.so.2")  # the library torch already loaded
    class UID(ctypes.Structure):
        _fields_ = [("internal", ctypes.c_char * 128)]
    uid, comm = UID(), ctypes.c_void_p()
    assert nccl.ncclGetUniqueId(ctypes.byref(uid)) == 0
    nccl.ncclCommInitRank.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, UID, ctypes.c_int]
    assert nccl.ncclCommInitRank(ctypes.byref(comm), 1, uid, 0) == 0
    for f in (nccl.ncclSend, nccl.ncclRecv):
        f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    a = torch.ones(4 << 20, device="cuda"); b = torch.empty_like(a)
    stream = torch.cuda.current_stream().cuda_stream
    for _ in range(steps):
        nccl.ncclGroupStart()
        nccl.ncclSend(a.data_ptr(), a.numel(), 7, 0, comm, stream)  # 7 = ncclFloat32
        nccl.ncclRecv(b.data_ptr(), b.numel(), 7, 0, comm, stream)
        assert nccl.ncclGroupEnd() == 0
    torch.cuda.synchronize()
    assert torch.equal(a, b)
    nccl.ncclCommDestroy(comm)

def run(rank, world, steps, port):
    torch.cuda.set_device(rank)
    kw = dict(backend="nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        dist.init_process_group(device_id=torch.device("cuda", rank), **kw)
    except TypeError:  # torch before 2.3
        dist.init_process_group(**kw)
    x = torch.ones(4 << 20, device="cuda")  # 16 MiB, above the Inspector's 8 KiB minimum
    for _ in range(steps):
        if world > 1 and rank == world - 1:
            time.sleep(0.003)  # the straggler: its all-reduce starts 3 ms after the others'
        dist.all_reduce(x)
        torch.cuda.synchronize()
    if world == 1:
        self_sendrecv(steps)
    dist.destroy_process_group()  # the Inspector writes what is left at communicator teardown

if __name__ == "__main__":
    world, steps, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    mp.spawn(run, args=(world, steps, port), nprocs=world, join=True)
PY
port=$((20000 + RANDOM % 20000))
NCCL_PROFILER_PLUGIN=$plugin NCCL_INSPECTOR_ENABLE=1 NCCL_INSPECTOR_DUMP_DIR=$work/inspector \
NCCL_INSPECTOR_DUMP_THREAD_INTERVAL_MICROSECONDS=200000 NCCL_INSPECTOR_DUMP_VERBOSE=1 \
NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,ENV,PROFILE \
  timeout 300 python3 "$work/workload.py" "$ngpu" "$steps" "$port" > "$work/workload.log" 2>&1
wstatus=$?
sleep 4  # two more collection intervals
kill -TERM "$colpid"; wait "$colpid"; cstatus=$?; colpid=""
[ "$wstatus" -eq 0 ] || fail "the workload exited with $wstatus: $(grep -v '^ *$' "$work/workload.log" | tail -3 | tr '\n' ' ')"
[ "$cstatus" -eq 0 ] || fail "the collector exited with $cstatus: $(tail -3 "$work/collector.log" | tr '\n' ' ')"
grep -q "Successfully loaded external profiler plugin" "$work/workload.log" ||
  fail "NCCL did not load the plugin: $(grep -m1 -i "profiler" "$work/workload.log" | cut -c1-200)"

# Compare what the Inspector wrote with what the receiver counted.
python3 - "$work" "$ngpu" <<'PY'
import glob, json, sys
work, world = sys.argv[1], int(sys.argv[2])
records = 0
ops = {}
for path in glob.glob(work + "/inspector/*"):
    for line in open(path, errors="replace"):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        perf = r.get("coll_perf") or r.get("p2p_perf")
        if perf:
            records += 1
            name = perf.get("coll") or perf.get("p2p")
            ops[name] = ops.get(name, 0) + 1
counted, skews, hwids, observable = {}, {}, set(), None
def attrs(kvs):
    return {a["key"]: next(iter(a["value"].values())) for a in kvs}
for line in open(work + "/metrics.jsonl"):
    for rm in json.loads(line).get("resourceMetrics", []):
        res = attrs(rm.get("resource", {}).get("attributes", []))
        for sm in rm.get("scopeMetrics", []):
            for m in sm.get("metrics", []):
                if m["name"] == "llm.collective.count":
                    for dp in m["sum"]["dataPoints"]:
                        key = json.dumps([res, attrs(dp["attributes"])], sort_keys=True)
                        counted[key] = max(counted.get(key, 0), int(dp["asInt"]))
                        if "hw.id" in res:
                            hwids.add(res["hw.id"])
                elif m["name"] == "llm.collective.arrival_skew":
                    for dp in m["histogram"]["dataPoints"]:
                        a = attrs(dp["attributes"])
                        key = (a.get("llm.collective.late_rank"), a.get("llm.collective.skew_basis"))
                        skews[key] = max(skews.get(key, 0), int(dp.get("count", 0)))
                elif m["name"] == "llm.collective.observability":
                    a = attrs(m["gauge"]["dataPoints"][-1]["attributes"])
                    observable = (a["llm.collective.observable"], a["llm.collective.observable_reason"])
total = sum(counted.values())
detail = f"{world} GPU(s), {records} Inspector records {ops}, {total} counted, GPUs named {len(hwids)}, observable {observable}"
if records == 0 and world == 1:
    # Seen on one H100 with NCCL 2.28.9 and Inspectors built from 2.28.9 and 2.30.7: the plugin loads, the
    # self send/recv pairs are tracked, and nothing is dumped. One GPU cannot show the receiver working.
    print(f"nccl-smoke: INCONCLUSIVE one GPU and the Inspector wrote no records ({detail}); run it on 2+ GPUs"); sys.exit(3)
if records == 0:
    print(f"nccl-smoke: FAIL the Inspector wrote no records ({detail}); see workload.log (NCCL_DEBUG)"); sys.exit(1)
if total != records:
    print(f"nccl-smoke: FAIL counted {total} operations, the Inspector wrote {records} ({detail})"); sys.exit(1)
if world > 1:
    named = {k: v for k, v in skews.items() if k[0] is not None}
    late = max(named, key=named.get) if named else None
    if late is None or int(late[0]) != world - 1:
        print(f"nccl-smoke: FAIL the late rank named was {late} ({skews}), expected rank {world-1} ({detail})"); sys.exit(1)
    detail += f", late rank {late[0]} named on {named[late]} collectives ({late[1]})"
else:
    detail += " (one GPU: single-rank all-reduces are local copies NCCL does not profile; the records are self send/recv)"
print(f"nccl-smoke: PASS {detail}")
PY
