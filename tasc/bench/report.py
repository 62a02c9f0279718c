"""Benchmark reports as Markdown: the README table, written between markers by the benchmark run."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path
from typing import Any, Sequence

BEGIN = "<!-- BENCHMARKS:BEGIN"
END = "<!-- BENCHMARKS:END -->"


def machine_info() -> dict[str, Any]:
    """Date, CPU model, cores, GPU and library versions of the machine a benchmark runs on."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line naming the date and machine of a run."""
    where = info.get("gpu") or f"{info.get('cpu')}, {info.get('cores')} cores" + (
        ", oneDNN packed linears" if info.get("cpu_linear") == "onednn-packed" else ""
    )
    return f"{info.get('date')} on {where} (torch {info.get('torch')}, transformers {info.get('transformers')})"


def quality_text(quality: dict[str, Any] | None, pair: str = "{} {}", sep: str = ", ") -> str:
    """Headline quality of a method's answers: slot F1 / exact match for JSON, BLEU / chrF for text."""
    if not quality:
        return ""
    keys = ("slot_f1", "exact_match") if quality.get("task") == "json" else ("bleu", "chrf", "faithful")
    return sep.join(pair.format(k, f"{quality[k]:.4g}") for k in keys if k in quality)


def split_text(report: dict[str, Any]) -> str:
    """Which corpus (part) a run drafted from and answered: each label names its split, e.g. "(held-out by entity: ...)"."""
    return "; ".join(f"{key} {report[key]}" for key in ("corpus", "prompts") if report.get(key))


def bench_table(rows: Sequence[tuple[str, dict[str, Any]]], quality: bool = False) -> str:
    """A Markdown table with one line per (task title, method) of the given bench reports.

    With `quality`, also characters per second (fair across tokenizers) and answer quality.
    """
    head = "| task | model | method | tok/s | speed-up vs greedy | vs pld | tokens/pass | identical to greedy |"
    rule = "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    if quality:
        head += " chars/s | quality |"
        rule += " ---: | --- |"
    lines = [head, rule]
    for title, report in rows:
        for name, fig in report["methods"].items():
            vs_pld = f"{fig['speedup_vs_pld']:.2f}x" if "speedup_vs_pld" in fig else ""
            line = (f"| {title} | {Path(str(report['model'])).name} | {name} | {fig['tokens_per_s']:.1f} | {fig['speedup']:.2f}x | {vs_pld} "
                    f"| {fig['mean_accepted']:.2f} | {fig['identical_to_greedy']:.2f} |")
            if quality:
                line += f" {fig.get('chars_per_s', 0):.0f} | {quality_text(fig.get('quality'))} |"
            lines.append(line)
    return "\n".join(lines)


def replace_section(text: str, body: str) -> str:
    """README text with everything between the benchmark markers replaced by `body`."""
    pattern = re.compile(re.escape(BEGIN) + r".*?-->\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError("README has no benchmark markers")
    header = f"{BEGIN} — written by scripts/bench_readme.py from the benchmark JSONs; do not edit by hand. -->"
    return pattern.sub(lambda _: f"{header}\n{body.rstrip()}\n{END}", text, count=1)
