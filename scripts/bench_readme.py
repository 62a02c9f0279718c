"""Render the benchmark JSONs under runs/ into the README's benchmark block (whichever exist)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasc.bench.report import bench_table, machine_line, replace_section  # noqa: E402

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


KERNELS = ("Rows marked oneDNN ran with oneDNN's packed linears (`tasc/core/cpu_kernels.py`); unmarked rows are "
           "older runs on PyTorch's default MKL linears, kept for comparison.")


def prompts_label(report: dict) -> str:
    """'(50 prompts)', naming the prompt-prefix cache and oneDNN linears when the run used them (older runs did not)."""
    cached = any((report.get("prefix_cache_tokens") or {}).values())
    onednn = (report.get("machine") or {}).get("cpu_linear") == "onednn-packed"
    return f"({report['n_prompts']} prompts{', prompt-prefix cache' if cached else ''}{', oneDNN' if onednn else ''})"


def quality_section() -> list[str]:
    """Fine-tune cost and held-out quality per task."""
    lines = ["| task | fine-tune | steps × batch | time | s/step | held-out inputs | quality |", "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    runs = (("SNIPS", "snips-ft.json", "snips-eval.json"),
            ("SNIPS, enriched vocabulary (TASC-ft), 270 steps", "snips-ft-enriched-270.json", "snips-eval-enriched-270.json"),
            ("SNIPS, enriched vocabulary (TASC-ft), 400 steps", "snips-ft-enriched.json", "snips-eval-enriched.json"),
            ("SNIPS, enriched vocabulary (TASC-ft), 440 steps (the base's token budget)", "snips-ft-enriched-440.json", "snips-eval-enriched-440.json"),
            ("E2E", "e2e-ft.json", "e2e-eval.json"))
    for task, ft_name, eval_name in runs:
        ft, ev = load(ft_name), load(eval_name)
        if not ft or not ev:
            continue
        cfg = ft["config"]
        kind = "LoRA" if cfg["lora"] else "full"
        metrics = ", ".join(f"{k} {ev[k]:.4g}" for k in QUALITY[ev["task"]] if k in ev)
        lines.append(f"| {task} | {kind}, lr {cfg['learning_rate'] or (1e-3 if cfg['lora'] else 2e-4):g} | {ft['steps']} × {cfg['batch_size']} "
                     f"| {ft['wall_s'] / 60:.1f} min | {ft['seconds_per_step']:.2f} | {ev['n']} | {metrics} |")
    return lines if len(lines) > 2 else []


def compression_section() -> list[str]:
    """Tokens per held-out answer with the base and the enriched tokenizer (scripts/compression_report.py)."""
    report = load("compression.json")
    if not report:
        return []
    lines = [f"### TASC-ft vocabulary: {report['budget']} mined tokens, {report['rounds']} rounds ({report['tokenizer']} tokenizer)", "",
             "| task | measured on | base tokens/answer | enriched | fewer tokens | round-trip failures | mining time |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, t in report["tasks"].items():
        lines.append(f"| {name} | {t['data']} | {t['base_tokens_per_output']:.1f} | {t['tokens_per_output']:.1f} | {t['reduction']:.1%} "
                     f"| {t['round_trip_failures']} | {t['mining_s']:.0f} s |")
    return lines + [""]


def training_cost(name: str) -> str:
    """'N steps, M min' of a training result JSON, or ''."""
    r = load(name)
    if not r:
        return ""
    if "pretrain" in r and "finetune" in r:  # a draft model: distil, pretrain, fine-tune
        return (f"{r['distil']['rows']} distilled rows, {r['pretrain']['steps']} + {r['finetune']['steps']} steps, "
                f"{r['wall_s'] / 60:.1f} min")
    if "steps" in r and "wall_s" in r:
        return f"{r['steps']} steps, {r['wall_s'] / 60:.1f} min"
    return ", ".join(f"{k}: {v}" for k, v in (r.get("training") or {}).items() if isinstance(v, (int, float)))


def main() -> None:
    """Write the block into README.md."""
    parts = []
    quality = quality_section()
    if quality:
        parts += ["### Task fine-tune and quality (greedy answers, held-out inputs)", "", *quality, ""]
    rows = [(f"{title} {prompts_label(report)}", report) for title, name in BENCHES if (report := load(name))]
    if rows:
        machine = machine_line(rows[0][1]["machine"]) if "machine" in rows[0][1] else "unknown machine"
        parts += [f"### Decoding speed (batch size 1, max {rows[0][1]['max_new_tokens']} new tokens)", "",
                  f"Measured {machine}. {KERNELS} Speed-ups are wall-time ratios against the faster of transformers' greedy "
                  "`generate` and our own greedy loop, in the same run; `pld` is transformers' prompt lookup decoding.", "",
                  bench_table(rows), ""]
    parts += compression_section()
    tascft = load("bench-snips-tascft.json")
    if tascft:
        costs = f"base fine-tune {training_cost('snips-ft.json')}; enriched fine-tune {training_cost('snips-ft-enriched-440.json')}"
        parts += ["### TASC-ft on SNIPS valid (speed-ups against the base fine-tuned model's greedy; same fine-tune budget)", "",
                  f"Measured {machine_line(tascft['machine'])}; {costs}. `identical to greedy` of the tasc-ft methods is "
                  "against the enriched model's own greedy ids.", "",
                  bench_table([(f"SNIPS valid {prompts_label(r)}", r) for r in (tascft, load("bench-snips-tascft-100.json")) if r], quality=True), ""]
    cont = "hybrid decoder = 6 target blocks, 1200 + 1000 steps (snips-hybrid-b6-cont)"
    modes = [(f"{title} {prompts_label(r)}", r) for title, name in ((f"SNIPS valid, every mode, {cont}", "bench-snips-modes-b6.json"),
                                            ("E2E held-out, every mode, hybrid 1000 steps (e2e-hybrid-1000)", "bench-e2e-modes-1000.json"),
                                            ("SNIPS valid", "bench-snips-modes.json"), ("E2E held-out", "bench-e2e-modes.json"),
                                            ("SNIPS valid, hybrid without copy head, 4000 inputs, 1000 steps", "bench-snips-hybrid-1000.json"),
                                            ("E2E held-out, hybrid without copy head, 1000 steps", "bench-e2e-hybrid-1000.json"),
                                            ("SNIPS valid, hybrid with copy head, 300 steps", "bench-snips-hybrid-copy.json"),
                                            ("SNIPS valid, hybrid with copy head, target layer 20, 300 steps", "bench-snips-hybrid-l20.json"),
                                            ("SNIPS valid, hybrid with copy head, 4000 inputs, 1000 steps", "bench-snips-hybrid-copy-1000.json"),
                                            ("SNIPS valid, hybrid decoder = 6 target blocks, 4000 inputs, 800 steps", "bench-snips-hybrid-b6.json"),
                                            ("SNIPS valid, hybrid decoder = 6 target blocks, 8000 inputs, 800 steps", "bench-snips-hybrid-b6-8k.json"),
                                            ("SNIPS valid, hybrid decoder = 6 target blocks, all 12859 inputs, 1200 steps", "bench-snips-hybrid-b6-all.json"),
                                            ("SNIPS valid, hybrid decoder = 6 target blocks, all 12859 inputs, 1200 steps", "bench-snips-hybrid-b6-all-100.json"),
                                            ("SNIPS valid, hybrid decoder = 8 target blocks, all 12859 inputs, 1200 steps", "bench-snips-hybrid-b8-all.json"),
                                            ("SNIPS valid, hybrid decoder = 8 target blocks, all 12859 inputs, 1200 steps", "bench-snips-hybrid-b8-all-100.json"),
                                            (f"SNIPS valid, {cont}", "bench-snips-hybrid-b6-cont.json"),
                                            (f"SNIPS valid, {cont}", "bench-snips-hybrid-b6-cont-100.json"),
                                            (f"SNIPS valid, every input, {cont}", "bench-snips-hybrid-b6-cont-all.json"))
             if (r := load(name))]
    if modes:
        costs = "; ".join(f"{n}: {training_cost(n + '.json')}" for n in ("snips-draft", "snips-hybrid", "snips-hybrid-1000", "snips-hybrid-copy", "snips-hybrid-l20",
                                                                       "snips-hybrid-copy-1000", "snips-hybrid-b6", "snips-hybrid-b6-8k", "snips-hybrid-b6-all", "snips-hybrid-b8-all",
                                                                       "snips-hybrid-b6-cont", "e2e-draft", "e2e-hybrid", "e2e-hybrid-1000")
                          if load(n + ".json"))
        parts += ["### Comparison modes: trained draft model and hybrid", "", f"Measured {machine_line(modes[0][1]['machine'])}. {KERNELS} Training cost: {costs}. The hybrid rows of 'SNIPS valid' and 'E2E held-out' "
                  "and the 'without copy head' rows were trained with `--no-copy` (before the copy head existed).", "",
                  bench_table(modes, quality=True), ""]
    if not parts:
        parts = ["No numbers yet: run `bash scripts/benchmarks.sh`."]
    readme = ROOT / "README.md"
    readme.write_text(replace_section(readme.read_text(encoding="utf-8"), "\n".join(parts)), encoding="utf-8")
    print(f"README benchmark block: {len(rows)} bench reports, {'with' if quality else 'no'} quality table")


if __name__ == "__main__":
    main()
