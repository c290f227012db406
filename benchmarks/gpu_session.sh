#!/usr/bin/env bash
# The one prepared command for a session lent a GPU (DEVELOPERS.md, "The GPU").
#
# Here, before the call:  make gpu-wheels          (loralib, which the GPU image lacks, into .whl/)
# Device call:            run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=540)
# After it:               copy the files it wrote under $OUT into results/gpu/<date>-<gpu>/ and commit
#
# It runs, in BUDGET_S seconds (default 470, inside 8 minutes), each step under its own timeout:
#   1. the GPU-only tests (CUDA-graph capture equals eager; a graphed run completes), at most 90 s;
#   2. one causal-LM run, at most LLM_TIMEOUT (150) s: a Llama-3.2-1B-shaped decoder (random
#      init, bf16 weights without autocast as peft's suite), batch 4 x 768 tokens, fft and
#      peft:lora, LLM_STEPS timed steps each (`tpme run --scenario causal-lm --preset peft`),
#      beside `tpme estimate` of the same settings for this GPU (h200 on an H200, h100 on an
#      H100: benchmarks/estimate_check.py gpu-key), and their comparison (predicted vs
#      measured peak memory, reserved memory and step time, with errors);
#   3. benchmarks/ratios.py at the paper preset for every method, bounded timed steps
#      (epoch time extrapolated and labelled so in each record), with the eager
#      cached-IISAN cell beside the graphed one, and the estimate beside the measurement,
#      in the time left of BUDGET_S;
#   4. the TPME table of those records.
# Writes to $OUT (default results/gpu/local): env.json, gpu-tests.log; llm-results.jsonl,
# llm-run.json, llm-run.log, llm-estimate.json, llm-estimate.log, llm-comparison.json;
# ratios.json, ratios.txt, ratios.log, results.jsonl, table.txt.
# PRESET, STEPS and PY override the defaults, and LLM_MODEL, LLM_SEQ, LLM_BATCH, LLM_STEPS,
# LLM_METHODS, LLM_SAMPLES the causal-LM run's; LLM_GPU is the estimate's GPU where there is
# no CUDA device. On a CPU, in a few minutes: OUT=/tmp/gpu PRESET=ci STEPS=4
# LLM_MODEL=tiny LLM_SEQ=32 PY=.venv/bin/python bash benchmarks/gpu_session.sh
set -uo pipefail
OUT=${OUT:-results/gpu/local}
PRESET=${PRESET:-paper}
STEPS=${STEPS:-20}
PY=${PY:-python3}
RUN_DIR=${RUN_DIR:-/tmp/tpme-gpu-run}
LLM_DIR=${LLM_DIR:-/tmp/tpme-gpu-llm}
LLM_MODEL=${LLM_MODEL:-llama-3.2-1b}
LLM_SEQ=${LLM_SEQ:-768}
LLM_BATCH=${LLM_BATCH:-4}
LLM_STEPS=${LLM_STEPS:-10}
LLM_METHODS=${LLM_METHODS:-fft,peft:lora}
LLM_SAMPLES=${LLM_SAMPLES:-256}
LLM_GPU=${LLM_GPU:-h200}
LLM_TIMEOUT=${LLM_TIMEOUT:-150}
BUDGET_S=${BUDGET_S:-470}
mkdir -p "$OUT"
rm -rf "$RUN_DIR" "$LLM_DIR"

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

RATIOS_CMD="benchmarks/ratios.py --preset $PRESET --steps $STEPS --all-methods --out $RUN_DIR --json-out $OUT/ratios.json"
"$PY" benchmarks/gpu_env.py --command "bash benchmarks/gpu_session.sh  # LLM_MODEL=$LLM_MODEL LLM_SEQ=$LLM_SEQ LLM_BATCH=$LLM_BATCH LLM_STEPS=$LLM_STEPS; python $RATIOS_CMD" > "$OUT/env.json" || exit 3
echo "tpme gpu session: $(date -u +%FT%TZ), preset $PRESET, $STEPS timed steps per cell -> $OUT"

timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_graphs.py > "$OUT/gpu-tests.log" 2>&1
tests_rc=$?
tail -3 "$OUT/gpu-tests.log"

# The causal-LM run and its estimate: every sequence LLM_SEQ tokens long (min = max), so the
# measured batches are the estimate's batch.
LLM_ARGS=(--scenario causal-lm --preset peft --model "$LLM_MODEL" --seq-len "$LLM_SEQ" --min-seq-len "$LLM_SEQ" --samples "$LLM_SAMPLES" --batch-size "$LLM_BATCH" --methods "$LLM_METHODS")
llm_start=$SECONDS
gpu_key=$("$PY" benchmarks/estimate_check.py gpu-key --fallback "$LLM_GPU") || gpu_key=$LLM_GPU
timeout "$LLM_TIMEOUT" "$PY" -m tpme.cli estimate "${LLM_ARGS[@]}" --gpu "$gpu_key" --json > "$OUT/llm-estimate.json" 2> "$OUT/llm-estimate.log"
llm_est_rc=$?
left=$(( LLM_TIMEOUT - (SECONDS - llm_start) ))
left=$(( left > 2 ? left : 2 ))
methods_n=$(( $(tr -cd , <<< "$LLM_METHODS" | wc -c) + 1 ))
# each cell its share, so a slow first cell is recorded as a timeout and the second still runs
timeout "$left" "$PY" -m tpme.cli run "${LLM_ARGS[@]}" --steps "$LLM_STEPS" --timeout $(( left / methods_n )) --out "$LLM_DIR" --no-report --quiet --json > "$OUT/llm-run.json" 2> "$OUT/llm-run.log"
llm_run_rc=$?
cp "$LLM_DIR/results.jsonl" "$OUT/llm-results.jsonl" 2>/dev/null
"$PY" benchmarks/estimate_check.py compare --results "$OUT/llm-results.jsonl" --estimate "$OUT/llm-estimate.json" --out "$OUT/llm-comparison.json" 2>> "$OUT/llm-run.log"
llm_cmp_rc=$?
echo "causal-LM ($LLM_MODEL, $LLM_BATCH x $LLM_SEQ tokens, estimate for $gpu_key): estimate exit $llm_est_rc, run exit $llm_run_rc, comparison exit $llm_cmp_rc (1: not comparable here)"

left=$(( BUDGET_S - SECONDS ))
# shellcheck disable=SC2086  # RATIOS_CMD is a word list on purpose
timeout $(( left > 60 ? left : 60 )) "$PY" $RATIOS_CMD > "$OUT/ratios.txt" 2> "$OUT/ratios.log"
ratios_rc=$?
cp "$RUN_DIR/results.jsonl" "$OUT/" 2>/dev/null
"$PY" -m tpme.cli score "$RUN_DIR" > "$OUT/table.txt" 2>&1
cat "$OUT/table.txt" "$OUT/ratios.txt"
echo "tests exit $tests_rc, causal-LM run exit $llm_run_rc, ratios exit $ratios_rc, $SECONDS s in all"
exit $(( tests_rc != 0 || ratios_rc > 1 || llm_est_rc != 0 || llm_run_rc != 0 || llm_cmp_rc > 1 ))
