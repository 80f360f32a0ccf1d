#!/usr/bin/env bash
# The GPU check of issue 5, for a session lent an H100/H200 for a few minutes. From the repo root:
#
#     OUT=/where/to/write benchmarks/gpu_check.sh      # OUT defaults to ./gpu-out
#
# It runs on the machine's own torch and Triton with PYTHONPATH=src (nothing is installed), every
# part under its own `timeout` (a hung kernel costs that part only) and all of them within
# TOTAL_SECONDS (default 500; a part that would start with under 15 s left is skipped), in this
# order, the most wanted first:
#   a. versions: torch, CUDA, cuDNN, Triton, the GPU
#   b. tests on the GPU: tests/test_kernels_triton.py (the experimental cooperative kernel's apart,
#      under a short timeout: a bug in its grid barrier would hang), the tests named *on_the_gpu
#      (CUDA-graph capture and replay in lstmlm train and lstmlm bench), tests marked `cuda` if any
#   c. lstmlm bench --device cuda at tf32 over every default size (the issue's reference table), for
#      at most BENCH_MAX_SECONDS (240); every finished row is kept
#   f. the cooperative kernel benched at B16/B64 against cuDNN and the per-step kernel (the 2x goal)
#   d. lstmlm train --preset text8-gpu on a prefix of wiki8, --max-seconds TRAIN_SECONDS, with
#      --cuda-graphs and without: chars/s of each (metrics.csv rows after the first, at steady state)
#   e. benchmarks/profile_step.py: the step's kernels by GPU time, cuDNN against lstmlm's pick, 3 sizes
#   c. (continued) bf16 and fp32 on BENCH_SUBSET sizes, in what time is left
# Everything is logged to $OUT/gpu_check.log; also $OUT/bench-<precision>.json, bench-cooperative.json
# and $OUT/train-<graphs|eager>.csv (7 files: the device tool brings back at most 8).
#
# Knobs (environment): PYTHON (python3), TOTAL_SECONDS, TRAIN_SECONDS (25), CORPUS (wiki8 file; default
# data/wiki8.txt.xz, shared/data/..., ../shared/data/..., /work/shared/data/...; else the repo's own
# text). wiki8 (23 MB) reaches the device machine if copied to data/ (ignored by git) and named in the
# device tool's `carry`: cp ../shared/data/wiki8.txt.xz data/ ; run(carry=["data"], ...).
# CORPUS_CHARS (20000000), BENCH_SECONDS (0.3 per implementation and size), BENCH_ROUNDS (1),
# BENCH_MAX_SECONDS (240), BENCH_SUBSET (sizes for bf16 and fp32), PRECISIONS ("tf32 bf16 fp32").
# DRY_RUN=1 runs every part on the CPU at tiny sizes (the --cuda-graphs run is then refused, as it
# must be): a check that nothing here is misspelt, for a machine without a GPU.
set -u
cd "$(dirname "$0")/.."

OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
PY=${PYTHON:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
DEADLINE=$((SECONDS + ${TOTAL_SECONDS:-500}))
TRAIN_SECONDS=${TRAIN_SECONDS:-25}
BENCH_SECONDS=${BENCH_SECONDS:-0.3}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
# the issue's two reference rows (H64 B256, H2048 B1024 P512) and the small-batch corners
BENCH_SUBSET=${BENCH_SUBSET:-"64,16,50,128 64,256,50,128 2048,16,50,128 2048,1024,50,128,512"}
PRECISIONS=${PRECISIONS:-"tf32 bf16 fp32"}
DEVICE=cuda
TRAIN_ARGS=()
if [ "${DRY_RUN:-0}" = 1 ]; then
    DEVICE=cpu
    PRECISIONS="fp32 bf16"
    BENCH_SUBSET="16,4,5,8"
    TRAIN_SECONDS=3
    CORPUS_CHARS=${CORPUS_CHARS:-300000}
    TRAIN_ARGS=(--hidden-size 32 --proj-size 8 --embedding-size 8 --batch-size 4 --num-unrollings 16
                --valid-batch-size 4 --precision fp32 --threads 1)
fi
CORPUS_CHARS=${CORPUS_CHARS:-20000000}
SUMMARY=()

log() { echo "$*" | tee -a "$LOG"; }

# part NAME SECONDS COMMAND...: COMMAND under `timeout`, for at most SECONDS and never past the deadline
part() {
    local name=$1 want=$2
    shift 2
    local left=$((DEADLINE - SECONDS - 5))
    local limit=$((want < left ? want : left))
    if ((limit < 15)); then
        log "== $name: skipped, ${left}s left"
        SUMMARY+=("$name: skipped (out of time)")
        return 0
    fi
    log "== $name (timeout ${limit}s): $*"
    local start=$SECONDS status
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    case $rc in
        0) status=ok ;;
        124 | 137) status="TIMED OUT after ${limit}s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    SUMMARY+=("$name: $status, $((SECONDS - start)) s")
    log "== $name: $status, $((SECONDS - start)) s"
}

log "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed files, device $DEVICE, budget ${TOTAL_SECONDS:-500} s"

# a. versions
part "a. versions" 60 "$PY" -c '
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
try:
    import triton
    print("triton", triton.__version__)
except ImportError as error:
    print("triton: not importable:", error)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, compute capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.1f} GiB")
else:
    print("no CUDA device visible to torch")
'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"

# b. tests on the GPU
if [ -f tests/test_kernels_triton.py ]; then
    part "b. triton kernel tests" 180 "$PY" -m pytest tests/test_kernels_triton.py -x -q -p no:cacheprovider -k "not cooperative"
    # the experimental cooperative kernel (grid barriers; a bug there can hang): apart, short timeout
    part "b. cooperative kernel tests" 60 "$PY" -m pytest tests/test_kernels_triton.py -x -q -p no:cacheprovider -k cooperative
else
    log "== b. tests/test_kernels_triton.py: not in this tree"
fi
part "b. CUDA-graph tests (train, bench)" 150 "$PY" -m pytest tests/test_train.py tests/test_bench.py -k on_the_gpu -x -q -rs -p no:cacheprovider
if "$PY" -m pytest --markers -p no:cacheprovider 2>/dev/null | grep -q '^@pytest.mark.cuda'; then
    part "b. tests marked cuda" 150 "$PY" -m pytest -m cuda -x -q -p no:cacheprovider
fi

# c. the bench sweep: the first precision (tf32) over every default size, for at most BENCH_MAX_SECONDS
bench_precision() {  # bench_precision PRECISION SECONDS [--sizes ...]
    local precision=$1 seconds=$2
    shift 2
    local extra=("$@")
    if [ "$DEVICE" = cpu ]; then
        extra=(--sizes $BENCH_SUBSET --kernel reference reference+lstmp)  # CPU bf16 breaks nn.LSTM and cpu
    fi
    part "c. bench $DEVICE $precision" "$seconds" "$PY" -m lstmlm bench --device "$DEVICE" --precision "$precision" \
        --seconds "$BENCH_SECONDS" --rounds "$BENCH_ROUNDS" "${extra[@]}" --out "$WORK/bench-$precision"
    [ -f "$WORK/bench-$precision/bench.json" ] && cp "$WORK/bench-$precision/bench.json" "$OUT/bench-$precision.json"
}
set -- $PRECISIONS
FIRST=$1
shift
REST="$*"
bench_precision "$FIRST" "${BENCH_MAX_SECONDS:-240}"

# f. the cooperative kernel (one launch per sequence, cells split over the SMs) at small batches, the
#    issue's >= 2x cuDNN goal, against cuDNN and the per-step kernel, in TF32
part "f. bench cooperative" 90 "$PY" -m lstmlm bench --device "$DEVICE" --precision "$([ "$DEVICE" = cpu ] && echo fp32 || echo tf32)" \
    --seconds "$BENCH_SECONDS" --rounds "$BENCH_ROUNDS" --out "$WORK/bench-cooperative" \
    --kernel nn.LSTM+proj "$([ "$DEVICE" = cpu ] && echo reference || echo triton)+lstmp" "$([ "$DEVICE" = cpu ] && echo reference || echo cooperative)+lstmp" \
    --sizes $([ "$DEVICE" = cpu ] && echo 16,4,5,8 || echo 256,16,50,128 1024,16,50,128,256 2048,16,50,128,512 1024,64,50,128,256)
[ -f "$WORK/bench-cooperative/bench.json" ] && cp "$WORK/bench-cooperative/bench.json" "$OUT/bench-cooperative.json"

# d. training smoke test: text8-gpu with and without --cuda-graphs, on a prefix of wiki8
SOURCE=${CORPUS:-}
if [ -z "$SOURCE" ]; then
    for candidate in data/wiki8.txt.xz shared/data/wiki8.txt.xz ../shared/data/wiki8.txt.xz /work/shared/data/wiki8.txt.xz; do
        [ -f "$candidate" ] && SOURCE=$candidate && break
    done
fi
TEXT="$WORK/corpus.txt"
"$PY" - "$SOURCE" "$CORPUS_CHARS" "$TEXT" <<'EOF' 2>&1 | tee -a "$LOG"
import lzma, pathlib, sys
source, chars, target = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
if source:
    with (lzma.open if source.endswith(".xz") else open)(source, "rb") as f:
        data = f.read(chars)
    print(f"corpus: the first {len(data):,} bytes of {source}")
else:  # no wiki8 here: the repository's own text, repeated
    files = [pathlib.Path("README.md"), *sorted(pathlib.Path("docs").glob("*.md")), *sorted(pathlib.Path("src").glob("**/*.py"))]
    data = b"".join(p.read_bytes() for p in files if p.is_file())
    data = (data * (chars // max(len(data), 1) + 1))[:chars]
    print(f"corpus: no wiki8 found (set CORPUS); {len(data):,} bytes of this repository's text instead")
target.write_bytes(data)
EOF
for mode in graphs eager; do
    flag=$([ $mode = graphs ] && echo --cuda-graphs || echo --no-cuda-graphs)
    part "d. train text8-gpu $flag" $((TRAIN_SECONDS + 90)) "$PY" -m lstmlm train --preset text8-gpu --corpus "$TEXT" \
        --max-seconds "$TRAIN_SECONDS" --valid-every 50 --valid-chars 20000 --checkpoint-every 100000 --sample-every 0 \
        "${TRAIN_ARGS[@]}" "$flag" --out "$WORK/train-$mode" --quiet
    if [ -f "$WORK/train-$mode/metrics.csv" ]; then
        cp "$WORK/train-$mode/metrics.csv" "$OUT/train-$mode.csv"
        "$PY" - "$WORK/train-$mode/metrics.csv" "$mode" <<'EOF' 2>&1 | tee -a "$LOG"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
speeds = [float(r["chars_per_second"]) for r in rows]
steady = speeds[1:] or speeds  # the first interval holds compilation, warm-up and capture
print(f"train {sys.argv[2]}: {rows[-1]['step']} steps; chars/s median {statistics.median(steady):,.0f} over "
      f"{len(steady)} intervals after the first (first {speeds[0]:,.0f}); last valid "
      f"{float(rows[-1]['valid_bits_per_char']):.3f} bits/char")
EOF
    fi
done

# e. where the time goes: torch.profiler over a few steps, cuDNN against what `auto` picks
part "e. profile" 75 "$PY" benchmarks/profile_step.py --device "$DEVICE" --steps 3 --top 10 \
    --sizes $([ "$DEVICE" = cpu ] && echo 16,4,5,8 || echo 64,16,50,128 1024,16,50,128,256 2048,1024,50,128,512)

# c, continued: the other precisions on BENCH_SUBSET, sharing what is left
set -- $REST
count=$#
for precision in $REST; do
    bench_precision "$precision" $(((DEADLINE - SECONDS - 5) / count)) --sizes $BENCH_SUBSET
    count=$((count - 1))
done

log ""
log "== summary ($SECONDS s)"
for line in "${SUMMARY[@]}"; do log "  $line"; done
log "files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
rm -rf "$WORK"
