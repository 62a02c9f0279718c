"""Render the benchmark JSONs under runs/ into the README's benchmark block (whichever exist)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasc.report import bench_table, machine_line, replace_section  # noqa: E402

RUNS = ROOT / "runs"
QUALITY = {"json": ("slot_f1", "intent_accuracy", "exact_match", "parse_rate"), "text": ("bleu", "chrf")}
BENCHES = (
    ("SNIPS valid, fine-tuned", "bench-snips-ft.json"),
    ("E2E held-out, fine-tuned", "bench-e2e-ft.json"),
    ("SNIPS valid, base 3-shot", "bench-snips-base.json"),
    ("E2E held-out, base 3-shot", "bench-e2e-base.json"),
)


def load(name: str) -> dict | None:
    """A result JSON from runs/, or None."""
    path = RUNS / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def quality_section() -> list[str]:
    """Fine-tune cost and held-out quality per task."""
    lines = ["| task | fine-tune | steps × batch | time | s/step | held-out inputs | quality |", "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for task, ft_name, eval_name in (("SNIPS", "snips-ft.json", "snips-eval.json"), ("E2E", "e2e-ft.json", "e2e-eval.json")):
        ft, ev = load(ft_name), load(eval_name)
        if not ft or not ev:
            continue
        cfg = ft["config"]
        kind = "LoRA" if cfg["lora"] else "full"
        metrics = ", ".join(f"{k} {ev[k]:.4g}" for k in QUALITY[ev["task"]] if k in ev)
        lines.append(f"| {task} | {kind}, lr {cfg['learning_rate'] or (1e-3 if cfg['lora'] else 2e-4):g} | {ft['steps']} × {cfg['batch_size']} "
                     f"| {ft['wall_s'] / 60:.1f} min | {ft['seconds_per_step']:.2f} | {ev['n']} | {metrics} |")
    return lines if len(lines) > 2 else []


def main() -> None:
    """Write the block into README.md."""
    parts = []
    quality = quality_section()
    if quality:
        parts += ["### Task fine-tune and quality (greedy answers, held-out inputs)", "", *quality, ""]
    rows = [(title, report) for title, name in BENCHES if (report := load(name))]
    if rows:
        machine = machine_line(rows[0][1]["machine"]) if "machine" in rows[0][1] else "unknown machine"
        n = rows[0][1]["n_prompts"]
        parts += [f"### Decoding speed ({n} prompts per task, batch size 1, max {rows[0][1]['max_new_tokens']} new tokens)", "",
                  f"Measured {machine}. Speed-ups are wall-time ratios against the faster of transformers' greedy "
                  "`generate` and our own greedy loop, in the same run; `pld` is transformers' prompt lookup decoding.", "",
                  bench_table(rows), ""]
    if not parts:
        parts = ["No numbers yet: run `bash scripts/benchmarks.sh`."]
    readme = ROOT / "README.md"
    readme.write_text(replace_section(readme.read_text(encoding="utf-8"), "\n".join(parts)), encoding="utf-8")
    print(f"README benchmark block: {len(rows)} bench reports, {'with' if quality else 'no'} quality table")


if __name__ == "__main__":
    main()
