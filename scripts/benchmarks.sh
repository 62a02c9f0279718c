#!/usr/bin/env bash
# The README's benchmark numbers, end to end on this machine (CPU: about 2 hours on 2 cores):
# fine-tune SmolLM2-135M on SNIPS and E2E, score both, benchmark decoding methods, render the README table.
# Each step skips when its result JSON exists, so a killed run continues where it stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
DATA=../shared/data
N=${N:-50}
mkdir -p runs
step() { local out=$1; shift; [ -s "$out" ] && { echo "skip: $out exists"; return; }; echo "run: $*"; "$PY" -m tasc "$@" --json "$out"; }

step runs/snips-ft.json finetune --model smollm2-135m --corpus $DATA/snips/train.jsonl --out runs/snips-ft --steps 250 --resume
step runs/e2e-ft.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --out runs/e2e-ft --steps 200 --resume
step runs/snips-eval.json evaluate --model runs/snips-ft --corpus $DATA/snips/valid.jsonl
step runs/e2e-eval.json evaluate --model runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --split heldout

METHODS=greedy,greedy-loop,pld,tasc-spec,tasc-corpus,tasc-context
step runs/bench-snips-ft.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods $METHODS
step runs/bench-e2e-ft.json bench --model runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --n "$N" --methods $METHODS
step runs/bench-snips-base.json bench --model smollm2-135m --shots 3 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods $METHODS
step runs/bench-e2e-base.json bench --model smollm2-135m --shots 3 --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --n "$N" --methods $METHODS

"$PY" scripts/bench_readme.py
