#!/usr/bin/env bash
# What edgegauge can check on a bare NVIDIA GPU machine (issue 23), in under 8 minutes.
#
#   scripts/gpu-check.sh [--dry-run] [OUT_DIR]        OUT_DIR defaults to $OUT; PYTHON picks the
#                                                     interpreter (default .venv/bin/python, else python3)
#
# Needs (no network, no TensorRT, no onnxruntime-gpu): the NVIDIA driver with nvidia-smi; PyTorch with
# CUDA (it makes the load); cuda-python / cuda-bindings whose major is the driver's CUDA major (what
# runners/cuda_rt.py uses); numpy; pytest for step 5 only. Steps, each under its own timeout:
#   1 env          environment.txt: date, kernel, Python, numpy/torch/cuda-python versions,
#                  nvidia-smi -L and the driver, runners.cuda_rt's verdict on the device        (40 s)
#   2 nvml-query   nvidia_smi_query_<gpu>_<driver major>.txt: the nvml source's --query-gpu fields plus
#                  name, driver, limits, once idle and once 5 s into a PyTorch load, in the format of
#                  tests/fixtures/onboard/nvidia_smi_query_*.txt (header says where it came from)  (60 s)
#   3 nvml-source  nvml_source.json: host/power/meters/nvml.py (NvmlGpu + Sampler) over 3 s idle and
#                  8 s of PyTorch load: readings, power/utilization/clocks/memory per window       (60 s)
#   4 cuda-rt      cuda_rt.json: runners/cuda_rt.py on the device: a 64 MiB round trip through device
#                  memory, events around a 256 MiB copy, cudaMemGetInfo before/after 512 MiB     (45 s)
#   5 gpu-tests    pytest -m gpu --gpu tests/test_cuda_rt.py tests/test_meters_nvml.py (the gated tests
#                  that need only the above) -> pytest-gpu.log, pytest-gpu.xml, and their own JSON
#                  captures (EDGEGAUGE_GPU_CAPTURE=OUT_DIR)                                         (200 s)
# summary.txt holds one line per step: "<step> <ok|FAILED|SKIPPED> <detail>".
#
# Exit codes: 0 every step that ran passed (a dry run: nothing was asked of a GPU, steps say SKIPPED
# and why); 1 a step failed; 2 bad command line or no OUT_DIR.
# Dry run: --dry-run, or automatically when nvidia-smi is missing or lists no GPU. Step 1 still runs
# (it needs no GPU), and step 5 only collects the gated tests (pytest --collect-only), so a CPU
# machine shows what would run and why it did not.
#
# Recording a capture as a fixture: copy nvidia_smi_query_*.txt to tests/fixtures/onboard/ (its header
# names the GPU, driver, kernel, date and the edgegauge revision that made it; add the machine's
# owner or cloud instance by hand), add its idle/load values to RECORDED in tests/test_meters_nvml.py,
# and put the JSON files under tests/fixtures/gpu-check/<gpu>-<driver>-<yyyymmdd>/ with an ORIGIN.txt
# copied from environment.txt; commit them with a message that names the machine and this script.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # host/ and runners/ for the Python steps

dry=0
out=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry=1 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
        -*) echo "gpu-check: unknown option $arg" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done
out=${out:-${OUT:-}}
if [ -z "$out" ]; then
    echo "gpu-check: no output folder: pass OUT_DIR or set \$OUT" >&2
    exit 2
fi
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$out/summary.txt"
failed=0

say() {  # say STEP STATUS DETAIL: one line on stdout and in summary.txt
    printf '%-12s %-8s %s\n' "$1" "$2" "$3" | tee -a "$out/summary.txt"
    [ "$2" = FAILED ] && failed=1
    return 0
}

gpu_absent() {  # prints why no GPU answers; exit status 0 when none does
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "no nvidia-smi on PATH (no NVIDIA driver here)"
        return 0
    fi
    local listing
    if ! listing=$(timeout 10 nvidia-smi -L 2>&1) || ! grep -q '^GPU ' <<<"$listing"; then
        echo "nvidia-smi -L lists no GPU: $(head -n 1 <<<"$listing")"
        return 0
    fi
    return 1
}

write_helpers() {  # the Python pieces, into $tmp
    cat >"$tmp/load.py" <<'PY'
"""PyTorch load on GPU 0: fp32 4096x4096 matrix products for argv[1] s, holding 1 GiB; touches argv[2] once running."""
import pathlib, sys, time
import torch
hold = torch.empty(1 << 28, dtype=torch.float32, device="cuda:0")
a = torch.rand(4096, 4096, device="cuda:0")
b = torch.rand(4096, 4096, device="cuda:0") / 4096
torch.cuda.synchronize()
pathlib.Path(sys.argv[2]).touch()
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(8):
        a = a @ b
    torch.cuda.synchronize()
PY
    cat >"$tmp/env.py" <<'PY'
"""Versions and runners.cuda_rt's verdict, one 'key: value' a line."""
import platform
print("python:", platform.python_version(), platform.machine())
for name in ("numpy", "torch", "cuda.bindings", "cuda"):
    try:
        mod = __import__(name, fromlist=["_"])
        print(f"{name}:", getattr(mod, "__version__", "imports"))
    except Exception as exc:
        print(f"{name}: not importable ({type(exc).__name__}: {exc})")
try:
    import torch
    print("torch.cuda.is_available:", torch.cuda.is_available(), "cuda", torch.version.cuda)
except Exception:
    pass
from runners import cuda_rt
reason = cuda_rt.unavailable_reason()
print("cuda_rt:", reason or f"device {cuda_rt.device_name()} {cuda_rt.compute_capability()} {cuda_rt.versions()}")
PY
    cat >"$tmp/nvml_source.py" <<'PY'
"""host/power/meters/nvml.py over 3 s idle and 8 s of load (load.py): readings and windows -> argv[1]."""
import json, pathlib, subprocess, sys, time
from host.power.meters import open_meter
from host.power.sampler import Sampler
meter = open_meter("nvml")
sampler = Sampler(meter, phase="idle").start()
time.sleep(3.0)
ready = pathlib.Path(sys.argv[2])
load = subprocess.Popen([sys.executable, sys.argv[3], "8", str(ready)])
while not ready.exists() and load.poll() is None:
    time.sleep(0.05)
t_load = sampler.set_phase("load")
load.wait(timeout=40)
samples = sampler.stop()
t0 = sampler.t_start_ns
doc = {"describe": meter.describe(), "load_exit": load.returncode,
       "idle": meter.window_telemetry(t0, t_load),
       "load": meter.window_telemetry(t_load + 1_500_000_000, sampler.t_stop_ns),  # after 1.5 s of ramp
       "samples": [{"t_s": (s.t_mono_ns - t0) / 1e9, "phase": s.phase, "power_w": s.power_w, "flags": list(s.flags),
                    "meter_time_s": s.meter_time_s, "error": s.error} for s in samples]}
pathlib.Path(sys.argv[1]).write_text(json.dumps(doc, indent=2) + "\n")
print(f"{len(samples)} readings; idle {doc['idle']['reads']}, load {doc['load']['reads']}; "
      f"load utilization {doc['load']['utilization_gpu_pct']}")
sys.exit(0 if load.returncode == 0 and samples and all(s.valid for s in samples) else 1)
PY
    cat >"$tmp/cuda_rt.py" <<'PY'
"""runners/cuda_rt.py on the device: round trip, events around a copy, memory figures -> argv[1]."""
import json, pathlib, sys
import numpy as np
from runners import cuda_rt
reason = cuda_rt.unavailable_reason()
if reason:
    sys.exit(f"runners.cuda_rt: {reason}")
doc = {"device": cuda_rt.device_name(), "compute_capability": cuda_rt.compute_capability(),
       "integrated": cuda_rt.integrated(), **cuda_rt.versions()}
n = 256 << 20
host, host_ptr = cuda_rt.pinned_empty((n,), np.uint8)
back, back_ptr = cuda_rt.pinned_empty((64 << 20,), np.uint8)
dev, stream = cuda_rt.device_alloc(n), cuda_rt.Stream()
start, end = cuda_rt.Event(), cuda_rt.Event()
host[:] = np.random.default_rng(23).integers(0, 256, n, dtype=np.uint8)
start.record(stream); cuda_rt.memcpy_htod_async(dev, host, stream); end.record(stream); end.synchronize()
doc["copy_256mib_ms"] = cuda_rt.elapsed_ms(start, end)
cuda_rt.memcpy_dtoh_async(back, dev, stream); stream.synchronize()
doc["round_trip_64mib_equal"] = bool(np.array_equal(back, host[: back.size]))
doc["free_total_bytes"] = cuda_rt.mem_get_info()
extra = cuda_rt.device_alloc(512 << 20)
doc["free_after_512mib_bytes"] = cuda_rt.mem_get_info()[0]
for ptr in (extra, dev):
    cuda_rt.free(ptr)
for ptr in (host_ptr, back_ptr):
    cuda_rt.free_host(ptr)
pathlib.Path(sys.argv[1]).write_text(json.dumps(doc, indent=2) + "\n")
print(f"{doc['device']}: 256 MiB copy {doc['copy_256mib_ms']:.3f} ms, round trip equal {doc['round_trip_64mib_equal']}, "
      f"free/total {doc['free_total_bytes']}")
sys.exit(0 if doc["round_trip_64mib_equal"] and doc["copy_256mib_ms"] > 0 else 1)
PY
}

step_env() {
    {
        echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "kernel: $(uname -srm)"
        echo "edgegauge_revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "gpu_check_dry_run: $dry"
        if command -v nvidia-smi >/dev/null 2>&1; then
            timeout 10 nvidia-smi -L 2>&1 | sed 's/^/nvidia-smi -L: /'
            timeout 10 nvidia-smi 2>&1 | grep -m 1 'Driver Version' | sed 's/^/nvidia-smi: /'
        else
            echo "nvidia-smi: not on PATH"
        fi
        timeout 20 "$py" "$tmp/env.py" 2>&1
    } >"$out/environment.txt"
    say env ok "environment.txt ($py: $(grep -m 1 '^cuda_rt:' "$out/environment.txt" || echo 'cuda_rt: did not run'))"
}

query_fields() {  # the nvml source's fields plus identification; without power.draw.instant on old drivers
    local base="timestamp,name,driver_version,pstate,power.draw,power.limit,utilization.gpu,utilization.memory"
    base="$base,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu"
    if timeout 10 nvidia-smi -i 0 --query-gpu=power.draw.instant --format=csv >/dev/null 2>&1; then
        echo "${base/power.draw,/power.draw,power.draw.instant,}"
    else
        echo "$base"
    fi
}

step_nvml_query() {
    local fields idle loadcsv name driver file pid
    fields=$(query_fields)
    idle=$(timeout 10 nvidia-smi -i 0 --query-gpu="$fields" --format=csv 2>&1) || { say nvml-query FAILED "$idle"; return; }
    timeout 60 "$py" "$tmp/load.py" 15 "$tmp/query-ready" >"$tmp/load.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do [ -e "$tmp/query-ready" ] || ! kill -0 "$pid" 2>/dev/null && break; sleep 0.1; done
    if [ ! -e "$tmp/query-ready" ]; then
        say nvml-query FAILED "the PyTorch load did not start: $(tail -n 1 "$tmp/load.log")"
        return
    fi
    sleep 5
    loadcsv=$(timeout 10 nvidia-smi -i 0 --query-gpu="$fields" --format=csv 2>&1)
    wait "$pid"
    name=$(tail -n 1 <<<"$idle" | cut -d, -f2 | sed 's/^ *//')
    driver=$(tail -n 1 <<<"$idle" | cut -d, -f3 | tr -d ' ')
    file="$out/nvidia_smi_query_$(tr 'A-Z' 'a-z' <<<"$name" | tr -cs 'a-z0-9' '_' | sed 's/_*$//;s/^nvidia_//')_${driver%%.*}.txt"
    {
        echo "# nvidia-smi --query-gpu ... --format=csv from a real $name, driver $driver, $(uname -sr): two sections (idle, load),"
        echo "# captured by scripts/gpu-check.sh at edgegauge $(git rev-parse --short HEAD 2>/dev/null || echo unknown) on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
        echo "# Load: PyTorch fp32 4096x4096 matrix products on GPU 0 holding 1 GiB, queried 5 s after they started."
        echo "# Lines starting with '#' are comments; the tests read the CSV header + row of each section."
        echo "# idle :: query-gpu"
        echo "# \$ nvidia-smi -i 0 --query-gpu=$fields --format=csv"
        echo "$idle"
        echo "# load :: query-gpu"
        echo "# \$ nvidia-smi -i 0 --query-gpu=$fields --format=csv"
        echo "$loadcsv"
    } >"$file"
    say nvml-query ok "$(basename "$file")"
}

step_python() {  # step_python STEP SECONDS SCRIPT OUTPUT [ARGS...]
    local step=$1 secs=$2 script=$3 output=$4 log
    shift 4
    if log=$(timeout "$secs" "$py" "$tmp/$script" "$out/$output" "$@" 2>&1); then
        say "$step" ok "$output: $(tail -n 1 <<<"$log")"
    else
        say "$step" FAILED "$(tail -n 3 <<<"$log" | tr '\n' ' ')"
    fi
}

step_tests() {
    local args=(-m pytest -p no:xdist -p no:cacheprovider -o addopts=-ra -q -m gpu --gpu
                tests/test_cuda_rt.py tests/test_meters_nvml.py)
    if ! "$py" -c "import pytest" >/dev/null 2>&1; then
        say gpu-tests SKIPPED "pytest is not importable by $py (pip install pytest); steps 3-4 ran the same code"
        return
    fi
    if [ "$dry" = 1 ]; then
        local listed
        listed=$(timeout 120 "$py" "${args[@]}" --collect-only 2>&1 | grep -c '::test_real_')
        say gpu-tests SKIPPED "$reason; would run $listed gated tests (pytest -m gpu --gpu, collected here)"
        return
    fi
    if EDGEGAUGE_GPU_CAPTURE="$out" timeout 200 "$py" "${args[@]}" --junitxml="$out/pytest-gpu.xml" \
            >"$out/pytest-gpu.log" 2>&1; then
        say gpu-tests ok "$(tail -n 1 "$out/pytest-gpu.log")"
    else
        say gpu-tests FAILED "$(tail -n 1 "$out/pytest-gpu.log") (pytest-gpu.log)"
    fi
}

write_helpers
reason=""
if [ "$dry" = 1 ]; then
    reason="dry run (--dry-run)"
elif reason=$(gpu_absent); then
    dry=1
    reason="dry run: $reason"
else
    reason=""
fi
[ "$dry" = 1 ] && echo "gpu-check: $reason: nothing is asked of a GPU; writing to $out"
step_env
if [ "$dry" = 1 ]; then
    say nvml-query SKIPPED "$reason; would query nvidia-smi idle and under a PyTorch load"
    say nvml-source SKIPPED "$reason; would sample host/power/meters/nvml.py over 3 s idle + 8 s load"
    say cuda-rt SKIPPED "$reason; would time copies and read memory through runners/cuda_rt.py"
else
    step_nvml_query
    step_python nvml-source 60 nvml_source.py nvml_source.json "$tmp/source-ready" "$tmp/load.py"
    step_python cuda-rt 45 cuda_rt.py cuda_rt.json
fi
step_tests
exit "$failed"
