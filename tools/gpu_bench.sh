#!/usr/bin/env bash
# The GPU benchmark of issue 7 in one go: `humanlike-tui bench` on builtin:phi-2-random (phi-2's
# shapes, random weights) and on builtin:tiny-phi, with --json, results under $OUT.
#
# Two steps, because the lent GPU machine has no package registry and no bitsandbytes:
#
#   1. here, on the development machine (no GPU needed):
#        bash tools/gpu_bench.sh prepare
#      copies bitsandbytes (only its CPU and CUDA 13 libraries: ~5 MB instead of 125 MB), platformdirs
#      and tomli_w from .venv into .gpu_site/ (ignored by git through .git/info/exclude).
#   2. on the GPU machine, through the device tool's `run`:
#        command: bash tools/gpu_bench.sh run     carry: [".gpu_site"]     timeout_s: 600
#      Writes $OUT/env.txt, $OUT/bench_phi2.json (+ .log), $OUT/bench_phi2_noautocast.json (the
#      quant.autocast=false A/B, engine only), $OUT/hw_measure_phi2.json (+ .log: the VRAM plan against
#      a measured peak, docs/vram-planning.md) and $OUT/bench_tiny.json (+ .log): 8 files, the most the
#      device tool brings back. About 5-6 minutes on an H100 (phi-2-random is
#      made once, ~5.6 GB on the local disk).
#
# Then put the table into docs/benchmarks.md with the card's name (see "GPU" there).
# GPU_BENCH_SAMPLES (default 160) sets --samples for phi-2; GPU_BENCH_ALLOW_CPU=1 lets `run` go on
# without a GPU (a dry run of this script with the tiny model only).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SITE=$ROOT/.gpu_site

prepare() {
    local venv=$ROOT/.venv/lib/python3*/site-packages
    venv=$(echo $venv)
    [ -d "$venv/bitsandbytes" ] || { echo "no bitsandbytes in $venv; run the README's install first" >&2; exit 1; }
    rm -rf "$SITE" && mkdir -p "$SITE"
    # bitsandbytes: Python files plus the libraries the GPU image can use (its torch is built for CUDA 13)
    (cd "$venv" && tar cf - --exclude='__pycache__' --exclude='libbitsandbytes_cuda1[12]*.so' \
        --exclude='libbitsandbytes_rocm*.so' --exclude='libbitsandbytes_xpu*.so' \
        bitsandbytes bitsandbytes-*.dist-info platformdirs platformdirs-*.dist-info tomli_w tomli_w-*.dist-info) \
        | (cd "$SITE" && tar xf -)
    grep -qx '/.gpu_site/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu_site/' >> "$ROOT/.git/info/exclude"
    du -sh "$SITE"
    echo "now, on the GPU machine: command 'bash tools/gpu_bench.sh run', carry ['.gpu_site'], timeout_s 600"
}

run() {
    local out=${OUT:-$ROOT/gpu-bench-out}
    mkdir -p "$out"
    export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export HUMANLIKE_TUI_HOME=${HUMANLIKE_TUI_HOME:-/tmp/hlt-gpu-bench}
    local py=${GPU_BENCH_PYTHON:-python3}
    [ -d "$SITE/bitsandbytes" ] || echo "warning: $SITE missing: run 'bash tools/gpu_bench.sh prepare' here first" >&2
    {
        date -u
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
        $py - <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
for name in ("transformers", "peft", "accelerate", "bitsandbytes", "platformdirs", "tomli_w", "pynvml"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING", type(exc).__name__, exc)
EOF
    } > "$out/env.txt" 2>&1
    cat "$out/env.txt"
    if ! $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        [ "${GPU_BENCH_ALLOW_CPU:-0}" = 1 ] || { echo "no CUDA GPU here; stopping" >&2; exit 1; }
        $py -m humanlike_tui bench --model builtin:tiny-phi --samples 32 --warmup 1 --json \
            > "$out/bench_tiny.json" 2> "$out/bench_tiny.log"
        echo "tiny (CPU dry run): exit $?"; cat "$out/bench_tiny.json"
        return
    fi
    # Most important first; each under its own timeout so that the JSON of what finished comes back
    # within the device tool's 600 s per command.
    timeout 300 $py -m humanlike_tui bench --model builtin:phi-2-random --samples "${GPU_BENCH_SAMPLES:-160}" --json \
        > "$out/bench_phi2.json" 2> "$out/bench_phi2.log"
    echo "phi-2-random: exit $?"; tail -3 "$out/bench_phi2.log"; cat "$out/bench_phi2.json"
    # The A/B for quant.autocast (docs/benchmarks.md, "GPU"): the engine alone, bf16 activations
    # throughout instead of autocast's fp32 stream, on the same samples; its log goes in the same file.
    timeout 120 $py -m humanlike_tui bench --model builtin:phi-2-random --samples "${GPU_BENCH_SAMPLES:-160}" \
        --engine-only --engine-set quant.autocast=false --json > "$out/bench_phi2_noautocast.json" 2>> "$out/bench_phi2.log"
    echo "phi-2-random, quant.autocast=false: exit $?"; cat "$out/bench_phi2_noautocast.json"
    # The VRAM plan's acceptance check (docs/vram-planning.md) on the same cached model: 3 real steps.
    timeout 90 $py -m humanlike_tui hw --preset gaming-8gb --set model.name=builtin:phi-2-random \
        --set data.source=builtin:sample --measure 3 --json > "$out/hw_measure_phi2.json" 2> "$out/hw_measure_phi2.log"
    echo "hw --measure: exit $?"
    timeout 60 $py -m humanlike_tui bench --model builtin:tiny-phi --json > "$out/bench_tiny.json" 2> "$out/bench_tiny.log"
    echo "tiny-phi: exit $?"; cat "$out/bench_tiny.json"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash tools/gpu_bench.sh prepare|run" >&2; exit 2 ;;
esac
