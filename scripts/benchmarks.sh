#!/usr/bin/env bash
# The README's benchmark numbers, end to end on this machine (CPU: about 4 hours on 2 cores):
# fine-tune SmolLM2-135M on SNIPS and E2E, score both, benchmark decoding methods, render the README table.
# Each step skips when its result JSON exists, so a killed run continues where it stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
DATA=../shared/data
N=${N:-50}
N_BASE=${N_BASE:-20}
mkdir -p runs
step() { local out=$1; shift; [ -s "$out" ] && { echo "skip: $out exists"; return; }; echo "run: $*"; "$PY" -m tasc "$@" --json "$out"; }

step runs/snips-ft.json finetune --model smollm2-135m --corpus $DATA/snips/train.jsonl --out runs/snips-ft --steps 270 --lr 4e-4 --precision fp32 --resume
step runs/e2e-ft.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --out runs/e2e-ft --steps 200 --precision fp32 --resume
step runs/snips-eval.json evaluate --model runs/snips-ft --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/e2e-eval.json evaluate --model runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --split heldout
# Issue 21: the same recipe on a split that shares no restaurant name with training (whole names held out)
step runs/e2e-ft-entity.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --out runs/e2e-ft-entity --steps 200 --precision fp32 --resume
step runs/e2e-eval-entity.json evaluate --model runs/e2e-ft-entity --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity
# Issue 21's recipe: E2E trained only on faithful references (every input attribute stated, none invented);
# SNIPS at lr 2e-4 for 380 steps (~20 min on 2 cores), and the enriched model at the same lr for 560 steps (same
# wall time); SNIPS quality also on the 67 valid rows whose slot values no training output holds (--unseen-in).
step runs/e2e-faithful-200.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-200 --steps 200 --precision fp32 --resume
step runs/e2e-faithful-200-entity.json evaluate --model runs/e2e-faithful-200 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/snips-lr2e4-380.json finetune --model smollm2-135m --corpus $DATA/snips/train.jsonl --out runs/snips-lr2e4-380 --steps 380 --lr 2e-4 --precision fp32 --resume
step runs/snips-lr2e4-380-valid.json evaluate --model runs/snips-lr2e4-380 --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-lr2e4-380-unseen.json evaluate --model runs/snips-lr2e4-380 --corpus $DATA/snips/valid.jsonl --unseen-in $DATA/snips/train.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-ft-unseen.json evaluate --model runs/snips-ft --corpus $DATA/snips/valid.jsonl --unseen-in $DATA/snips/train.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-enr-560.json finetune --enriched runs/snips-enriched --corpus $DATA/snips/train.jsonl --out runs/snips-enr-560 --steps 560 --lr 2e-4 --precision fp32 --resume
step runs/snips-enr-560-valid.json evaluate --model runs/snips-enr-560 --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-enr-560-unseen.json evaluate --model runs/snips-enr-560 --corpus $DATA/snips/valid.jsonl --unseen-in $DATA/snips/train.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/bench-snips-unseen.json bench --model runs/snips-lr2e4-380 --ft-model runs/snips-enr-560 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --unseen-in $DATA/snips/train.jsonl --n 67 --methods greedy,greedy-loop,pld,tasc-spec,tasc-ft,tasc-ft+spec
# E2E TASC-ft on the entity split: the vocabulary mined from the train part's outputs only (written to a temporary file).
E2E_TRAIN=$(mktemp --suffix .jsonl)
"$PY" -c "import sys; from tasc.core.corpus import load_corpus, select_split, write_jsonl; write_jsonl(select_split(load_corpus(sys.argv[1]), 'train', 0.1, 0, 'entity'), sys.argv[2])" $DATA/e2e/dev.jsonl "$E2E_TRAIN"
step runs/e2e-entity-enriched.json enrich "$E2E_TRAIN" --model smollm2-135m --budget 300 --out runs/e2e-entity-enriched
step runs/e2e-faithful-enr-200.json finetune --enriched runs/e2e-entity-enriched --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-enr-200 --steps 200 --precision fp32 --resume
step runs/e2e-faithful-enr-200-entity.json evaluate --model runs/e2e-faithful-enr-200 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/bench-e2e-entity.json bench --model runs/e2e-faithful-200 --ft-model runs/e2e-faithful-enr-200 --corpus $DATA/e2e/dev.jsonl --prompts $DATA/e2e/dev.jsonl --corpus-split train --prompts-split heldout --split-by entity --n 50 --methods greedy,greedy-loop,pld,tasc-spec,tasc-ft,tasc-ft+spec
# The recipe with bf16 autocast and the answer-only head (2026-12-01): twice the steps in the same 20 minutes.
step runs/snips-bf16-800.json finetune --model smollm2-135m --corpus $DATA/snips/train.jsonl --out runs/snips-bf16-800 --steps 800 --lr 2e-4 --resume
step runs/snips-bf16-800-valid.json evaluate --model runs/snips-bf16-800 --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-bf16-800-unseen.json evaluate --model runs/snips-bf16-800 --corpus $DATA/snips/valid.jsonl --unseen-in $DATA/snips/train.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-enr-1300.json finetune --enriched runs/snips-enriched --corpus $DATA/snips/train.jsonl --out runs/snips-enr-1300 --steps 1300 --lr 2e-4 --resume
step runs/snips-enr-1300-valid.json evaluate --model runs/snips-enr-1300 --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-enr-1300-unseen.json evaluate --model runs/snips-enr-1300 --corpus $DATA/snips/valid.jsonl --unseen-in $DATA/snips/train.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/bench-snips-unseen-bf16.json bench --model runs/snips-bf16-800 --ft-model runs/snips-enr-1300 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --unseen-in $DATA/snips/train.jsonl --n 67 --methods greedy,greedy-loop,pld,tasc-spec,tasc-ft,tasc-ft+spec
step runs/e2e-faithful-400.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-400 --steps 400 --resume
step runs/e2e-faithful-400-entity.json evaluate --model runs/e2e-faithful-400 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/e2e-faithful-enr-400.json finetune --enriched runs/e2e-entity-enriched --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-enr-400 --steps 400 --resume
step runs/e2e-faithful-enr-400-entity.json evaluate --model runs/e2e-faithful-enr-400 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/e2e-faithful-700.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-700 --steps 700 --resume
step runs/e2e-faithful-700-entity.json evaluate --model runs/e2e-faithful-700 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/e2e-faithful-enr-470.json finetune --enriched runs/e2e-entity-enriched --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-enr-470 --steps 470 --resume
step runs/e2e-faithful-enr-470-entity.json evaluate --model runs/e2e-faithful-enr-470 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/e2e-faithful-enr-800.json finetune --enriched runs/e2e-entity-enriched --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-enr-800 --steps 800 --resume
step runs/e2e-faithful-enr-800-entity.json evaluate --model runs/e2e-faithful-enr-800 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
# ... fewer steps (300), and a smaller vocabulary (100 mined tokens, 470 steps): neither closes the gap.
step runs/e2e-faithful-enr-300.json finetune --enriched runs/e2e-entity-enriched --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-enr-300 --steps 300 --resume
step runs/e2e-faithful-enr-300-entity.json evaluate --model runs/e2e-faithful-enr-300 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/e2e-entity-enriched-100.json enrich "$E2E_TRAIN" --model smollm2-135m --budget 100 --out runs/e2e-entity-enriched-100
step runs/e2e-faithful-enr100-470.json finetune --enriched runs/e2e-entity-enriched-100 --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --out runs/e2e-faithful-enr100-470 --steps 470 --resume
step runs/e2e-faithful-enr100-470-entity.json evaluate --model runs/e2e-faithful-enr100-470 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/bench-e2e-entity-bf16.json bench --model runs/e2e-faithful-400 --ft-model runs/e2e-faithful-enr-400 --corpus $DATA/e2e/dev.jsonl --prompts $DATA/e2e/dev.jsonl --corpus-split train --prompts-split heldout --split-by entity --n 50 --methods greedy,greedy-loop,pld,tasc-spec,tasc-ft,tasc-ft+spec
# The recipe now (2026-12-01): faithful rows + attribute dropout + new names (`tasc.ft.augment`); dropout alone first.
step runs/e2e-drop-400.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --attribute-dropout --out runs/e2e-drop-400 --steps 400 --resume
step runs/e2e-drop-400-entity.json evaluate --model runs/e2e-drop-400 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/e2e-drop-enr-400.json finetune --enriched runs/e2e-entity-enriched --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --attribute-dropout --out runs/e2e-drop-enr-400 --steps 400 --resume
step runs/e2e-drop-enr-400-entity.json evaluate --model runs/e2e-drop-enr-400 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
for M in dropnames-400 dropnames-enr-400; do
  FROM="--model smollm2-135m"; [ "$M" = dropnames-enr-400 ] && FROM="--enriched runs/e2e-entity-enriched"
  step runs/e2e-$M.json finetune $FROM --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --attribute-dropout --new-names --out runs/e2e-$M --steps 400 --resume
  step runs/e2e-$M-entity.json evaluate --model runs/e2e-$M --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
done
# The app's task model (LoRA r16, lr 2e-3, 80 steps) with faithful rows only, and with the recipe now.
step runs/e2e-app-faithful-80.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --lora --lr 2e-3 --steps 80 --out runs/e2e-app-faithful-80 --resume
step runs/e2e-app-faithful-80-entity.json evaluate --model runs/e2e-app-faithful-80 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity
step runs/e2e-app-recipe-80.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --attribute-dropout --new-names --lora --lr 2e-3 --steps 80 --out runs/e2e-app-recipe-80 --resume
step runs/e2e-app-recipe-80-entity.json evaluate --model runs/e2e-app-recipe-80 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity
# TASC-ft with the base fine-tune as teacher (its greedy answers to the training inputs join the rows).
step runs/e2e-teacher-enr-400.json finetune --enriched runs/e2e-entity-enriched --corpus $DATA/e2e/dev.jsonl --split train --split-by entity --faithful-only --attribute-dropout --new-names --teacher runs/e2e-dropnames-400 --out runs/e2e-teacher-enr-400 --steps 400 --resume
step runs/e2e-teacher-enr-400-entity.json evaluate --model runs/e2e-teacher-enr-400 --corpus $DATA/e2e/dev.jsonl --split heldout --split-by entity --draft-corpus $DATA/e2e/dev.jsonl
step runs/bench-e2e-entity-teacher.json bench --model runs/e2e-dropnames-400 --ft-model runs/e2e-teacher-enr-400 --corpus $DATA/e2e/dev.jsonl --prompts $DATA/e2e/dev.jsonl --corpus-split train --prompts-split heldout --split-by entity --n 50 --methods greedy,greedy-loop,pld,tasc-spec,tasc-ft,tasc-ft+spec
step runs/bench-e2e-entity-dropnames.json bench --model runs/e2e-dropnames-400 --ft-model runs/e2e-dropnames-enr-400 --corpus $DATA/e2e/dev.jsonl --prompts $DATA/e2e/dev.jsonl --corpus-split train --prompts-split heldout --split-by entity --n 50 --methods greedy,greedy-loop,pld,tasc-spec,tasc-ft,tasc-ft+spec
step runs/e2e-dropnames-input-400.json finetune --model smollm2-135m --corpus $DATA/e2e/dev.jsonl --split train --faithful-only --attribute-dropout --new-names --out runs/e2e-dropnames-input-400 --steps 400 --resume
step runs/e2e-dropnames-input-400-heldout.json evaluate --model runs/e2e-dropnames-input-400 --corpus $DATA/e2e/dev.jsonl --split heldout --draft-corpus $DATA/e2e/dev.jsonl
# Issue 20: TASC on llama.cpp with f32, bf16 and q8_0 weights, then the same prompts on our PyTorch loop.
for T in f32 bf16 q8_0; do
  step runs/bench-snips-llamacpp-$T.json bench --engine llamacpp --gguf-type $T --model runs/snips-lr2e4-380 --ft-model runs/snips-enr-560 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n 50 --methods llamacpp-greedy,llamacpp-lookup,llamacpp-lookup-corpus,tasc-spec,tasc-ft,tasc-ft+spec
done
step runs/bench-snips-torch-recipe21.json bench --model runs/snips-lr2e4-380 --ft-model runs/snips-enr-560 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n 50 --methods greedy,greedy-loop,greedy-static,pld,tasc-spec,tasc-ft,tasc-ft+spec

METHODS=greedy,greedy-loop,pld,tasc-spec,tasc-corpus,tasc-context
step runs/bench-snips-ft.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods $METHODS
step runs/bench-e2e-ft.json bench --model runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --n "$N" --methods $METHODS
step runs/bench-e2e-ft-entity.json bench --model runs/e2e-ft-entity --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --split-by entity --n "$N" --methods $METHODS

# Comparison modes (issue 7): a trained draft model and the encoder -> small-decoder hybrid.
step runs/snips-draft.json train-draft --target runs/snips-ft --corpus $DATA/snips/train.jsonl --layers 2 --hidden 256 --out runs/snips-draft --resume
step runs/snips-hybrid.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --decoder-init runs/snips-draft --no-copy --out runs/snips-hybrid --resume
MODES=greedy,greedy-loop,pld,tasc-spec,draft-model,draft-model+tasc,hybrid
step runs/bench-snips-modes.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods $MODES --draft-model runs/snips-draft --hybrid-model runs/snips-hybrid

# The base model, few-shot (no fine-tune): the same methods on fewer prompts (its answers run longer).
step runs/bench-snips-base.json bench --model smollm2-135m --shots 3 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N_BASE" --methods $METHODS
step runs/bench-e2e-base.json bench --model smollm2-135m --shots 3 --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --n "$N_BASE" --methods $METHODS

# TASC-ft (issue 5): enrich the vocabulary (300 tokens), fine-tune with the same budget, compare with the base fine-tune:
# the same steps (270), and about the same wall time (an enriched step is shorter: alone, 400 steps take ~13 min against the base's 14.6).
[ -s runs/compression.json ] || "$PY" scripts/compression_report.py --json runs/compression.json
step runs/snips-enriched.json enrich $DATA/snips/train.jsonl --valid $DATA/snips/valid.jsonl --model smollm2-135m --budget 300 --out runs/snips-enriched
step runs/snips-ft-enriched-270.json finetune --enriched runs/snips-enriched --corpus $DATA/snips/train.jsonl --out runs/snips-ft-enriched-270 --steps 270 --lr 4e-4 --precision fp32 --resume
step runs/snips-eval-enriched-270.json evaluate --model runs/snips-ft-enriched-270 --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/snips-ft-enriched.json finetune --enriched runs/snips-enriched --corpus $DATA/snips/train.jsonl --out runs/snips-ft-enriched --steps 400 --lr 4e-4 --precision fp32 --resume
step runs/snips-eval-enriched.json evaluate --model runs/snips-ft-enriched --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
# 440 steps: the base's token budget (440 x 8 rows of 35 prompt + 11 answer tokens = 162k, against 270 x 8 x (35 + 38) = 159k), and its wall time at 2.0 s per step.
step runs/snips-ft-enriched-440.json finetune --enriched runs/snips-enriched --corpus $DATA/snips/train.jsonl --out runs/snips-ft-enriched-440 --steps 440 --lr 4e-4 --precision fp32 --resume
step runs/snips-eval-enriched-440.json evaluate --model runs/snips-ft-enriched-440 --corpus $DATA/snips/valid.jsonl --draft-corpus $DATA/snips/train.jsonl
step runs/bench-snips-tascft.json bench --model runs/snips-ft --ft-model runs/snips-ft-enriched-440 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,greedy-loop,pld,tasc-spec,tasc-ft,tasc-ft+spec
# The same TASC-ft comparison on 100 prompts (one of the first 50 answers loops to the 128-token cap and weighs on a 50-prompt mean).
step runs/bench-snips-tascft-100.json bench --model runs/snips-ft --ft-model runs/snips-ft-enriched-440 --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n 100 --methods greedy,tasc-ft,tasc-ft+spec

# E2E comparison modes.
step runs/e2e-draft.json train-draft --target runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --split train --layers 2 --hidden 256 --out runs/e2e-draft --resume
step runs/e2e-hybrid.json train-hybrid --target runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --split train --decoder-init runs/e2e-draft --no-copy --out runs/e2e-hybrid --resume
step runs/bench-e2e-modes.json bench --model runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --n "$N" --methods $MODES --draft-model runs/e2e-draft --hybrid-model runs/e2e-hybrid
# The hybrids with 1000 training steps instead of 300 (SNIPS: on 4000 inputs): how much of their quality gap is training.
step runs/snips-hybrid-1000.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --decoder-init runs/snips-draft --no-copy --max-inputs 4000 --steps 1000 --out runs/snips-hybrid-1000 --resume
step runs/bench-snips-hybrid-1000.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-1000
step runs/e2e-hybrid-1000.json train-hybrid --target runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --split train --decoder-init runs/e2e-draft --no-copy --steps 1000 --out runs/e2e-hybrid-1000 --resume
step runs/bench-e2e-hybrid-1000.json bench --model runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --n "$N" --methods greedy,greedy-loop,hybrid --hybrid-model runs/e2e-hybrid-1000
# Every mode in one run, with the 1000-step hybrid.
step runs/bench-e2e-modes-1000.json bench --model runs/e2e-ft --corpus $DATA/e2e/dev.jsonl --corpus-split train --prompts $DATA/e2e/dev.jsonl --prompts-split heldout --n "$N" --methods $MODES --draft-model runs/e2e-draft --hybrid-model runs/e2e-hybrid-1000
# The hybrid with the copy head (the default): 300 steps, the same with mid-layer (20 of 30) target states, and 1000 steps on 4000 inputs.
step runs/snips-hybrid-copy.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --decoder-init runs/snips-draft --out runs/snips-hybrid-copy --resume
step runs/bench-snips-hybrid-copy.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,hybrid --hybrid-model runs/snips-hybrid-copy
step runs/snips-hybrid-l20.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --decoder-init runs/snips-draft --encoder-layer 20 --out runs/snips-hybrid-l20 --resume
step runs/bench-snips-hybrid-l20.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,hybrid --hybrid-model runs/snips-hybrid-l20
step runs/snips-hybrid-copy-1000.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --decoder-init runs/snips-draft --max-inputs 4000 --steps 1000 --out runs/snips-hybrid-copy-1000 --resume
step runs/bench-snips-hybrid-copy-1000.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,hybrid --hybrid-model runs/snips-hybrid-copy-1000
# The hybrid whose decoder is 6 of the target's own 30 blocks (embeddings frozen), 800 steps on 4000 inputs.
step runs/snips-hybrid-b6.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --target-blocks 6 --max-inputs 4000 --steps 800 --lr 5e-4 --out runs/snips-hybrid-b6 --resume
step runs/bench-snips-hybrid-b6.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b6
step runs/snips-hybrid-b6-8k.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --target-blocks 6 --max-inputs 8000 --steps 800 --lr 5e-4 --out runs/snips-hybrid-b6-8k --resume
step runs/bench-snips-hybrid-b6-8k.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b6-8k
# ... on every SNIPS training input (12859) for 1200 steps (the same 1.5 epochs), benchmarked on 50 and on 100 prompts.
step runs/snips-hybrid-b6-all.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --target-blocks 6 --max-inputs 14000 --steps 1200 --lr 5e-4 --out runs/snips-hybrid-b6-all --resume
step runs/bench-snips-hybrid-b6-all.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b6-all
step runs/bench-snips-hybrid-b6-all-100.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n 100 --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b6-all
# ... and with 8 target blocks (0, 4, 8, 12, 17, 21, 25, 29) instead of 6.
step runs/snips-hybrid-b8-all.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --target-blocks 8 --max-inputs 14000 --steps 1200 --lr 5e-4 --out runs/snips-hybrid-b8-all --resume
step runs/bench-snips-hybrid-b8-all.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b8-all
step runs/bench-snips-hybrid-b8-all-100.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n 100 --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b8-all
# ... the 6-block hybrid trained 1000 steps more (lr 3e-4, another data order), its copy head now blind to special
# tokens (it had ended answers by copying the prompt's <|im_end|>); benchmarked on 50, 100 and all 695 valid inputs,
# and beside every other mode in one run.
step runs/snips-hybrid-b6-cont.json train-hybrid --target runs/snips-ft --corpus $DATA/snips/train.jsonl --continue-from runs/snips-hybrid-b6-all --max-inputs 14000 --steps 1000 --lr 3e-4 --seed 1 --out runs/snips-hybrid-b6-cont --resume
step runs/bench-snips-hybrid-b6-cont.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b6-cont
step runs/bench-snips-hybrid-b6-cont-100.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n 100 --methods greedy,greedy-loop,hybrid --hybrid-model runs/snips-hybrid-b6-cont
step runs/bench-snips-hybrid-b6-cont-all.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n 700 --methods greedy,hybrid --hybrid-model runs/snips-hybrid-b6-cont
step runs/bench-snips-modes-b6.json bench --model runs/snips-ft --corpus $DATA/snips/train.jsonl --prompts $DATA/snips/valid.jsonl --n "$N" --methods $MODES --draft-model runs/snips-draft --hybrid-model runs/snips-hybrid-b6-cont

"$PY" scripts/bench_readme.py
