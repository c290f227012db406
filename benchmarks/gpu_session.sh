#!/usr/bin/env bash
# The one prepared command for a session lent a GPU (DEVELOPERS.md, "The GPU").
#
# Here, before the call:  make gpu-wheels          (loralib, which the GPU image lacks, into .whl/)
# Device call:            run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=540)
# After it:               copy the files it wrote under $OUT into results/gpu/<date>-<gpu>/ and commit
#
# It runs, within about 8 minutes on an H200:
#   1. the GPU-only tests (CUDA-graph capture equals eager; a graphed run completes),
#   2. benchmarks/ratios.py at the paper preset for every method, bounded timed steps
#      (epoch time extrapolated and labelled so in each record), with the eager
#      cached-IISAN cell beside the graphed one, and the estimate beside the measurement,
#   3. the TPME table of those records.
# Writes to $OUT (default results/gpu/local): env.json, gpu-tests.log, ratios.json,
# ratios.txt, ratios.log, results.jsonl, table.txt. PRESET, STEPS and PY override the defaults
# (PRESET=ci STEPS=4 PY=.venv/bin/python runs the same script on a CPU in a minute).
set -uo pipefail
OUT=${OUT:-results/gpu/local}
PRESET=${PRESET:-paper}
STEPS=${STEPS:-20}
PY=${PY:-python3}
RUN_DIR=${RUN_DIR:-/tmp/tpme-gpu-run}
mkdir -p "$OUT"
rm -rf "$RUN_DIR"

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

RATIOS_CMD="benchmarks/ratios.py --preset $PRESET --steps $STEPS --all-methods --out $RUN_DIR --json-out $OUT/ratios.json"
"$PY" benchmarks/gpu_env.py --command "bash benchmarks/gpu_session.sh  # python $RATIOS_CMD" > "$OUT/env.json" || exit 3
echo "tpme gpu session: $(date -u +%FT%TZ), preset $PRESET, $STEPS timed steps per cell -> $OUT"

timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_graphs.py > "$OUT/gpu-tests.log" 2>&1
tests_rc=$?
tail -3 "$OUT/gpu-tests.log"

# shellcheck disable=SC2086  # RATIOS_CMD is a word list on purpose
timeout 420 "$PY" $RATIOS_CMD > "$OUT/ratios.txt" 2> "$OUT/ratios.log"
ratios_rc=$?
cp "$RUN_DIR/results.jsonl" "$OUT/" 2>/dev/null
"$PY" -m tpme.cli score "$RUN_DIR" > "$OUT/table.txt" 2>&1
cat "$OUT/table.txt" "$OUT/ratios.txt"
echo "tests exit $tests_rc, ratios exit $ratios_rc"
exit $(( tests_rc != 0 || ratios_rc > 1 ))
