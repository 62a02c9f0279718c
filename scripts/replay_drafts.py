"""Replay TASC-spec's drafting over fixed greedy answers: passes and modelled pass time, without the model.

Greedy verification is lossless, so the tokens a model emits for a prompt are its greedy answer
whatever the drafter proposes; a drafter's passes can therefore be replayed offline: propose, accept
the longest prefix that matches the answer, tell the drafter, go on. A drafting change is then judged
in seconds on hundreds of prompts, exactly (same passes as the real loop), instead of by wall-clock
runs whose noise on 2 shared cores (±5%) is larger than most changes. Pass time comes from a cost
model of a CPU verify pass (fixed cost, flat up to `--flat` tokens, then `--slope` per token, the lazy
output head's rows) fitted to this repository's measurements; only ratios between settings are read.

    .venv/bin/python scripts/replay_drafts.py --model runs/snips-ft --task snips --n 50
    .venv/bin/python scripts/replay_drafts.py --model runs/snips-ft --task snips --n 200 --offset 50 --set history=0
    .venv/bin/python scripts/replay_drafts.py --model runs/e2e-faithful-200 --task e2e --n 50 --set max_branches=1

The answers are generated once with the model (`--answers`, default runs/replay/<task>-<offset>-<n>.json)
and reused. Tasks: snips (corpus SNIPS train, prompts SNIPS valid) and e2e (E2E dev split by entity:
corpus the train part, prompts the held-out names), as `tasc bench` runs them in the README.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class PassCost:
    """Milliseconds of a CPU verify pass: decoder body over `width` tokens plus the output head's rows.

    Defaults: SmolLM2-135M, fp32, oneDNN, AMD EPYC 2 cores, measured 2026-12-02 (body 38 ms up to 9
    tokens, +1.55 ms per token past that; head 3.5 ms + 0.3 ms per row).
    """

    fixed: float = 38.0
    flat: int = 9
    slope: float = 1.55
    head_fixed: float = 3.5
    head_row: float = 0.3
    first_rows: int = 8  # the lazy head's first batch (`tasc.spec.lazy_head.FIRST_ROWS`)

    def body(self, width: int) -> float:
        return self.fixed + self.slope * max(0, width - self.flat)

    def head(self, rows: int) -> float:
        return self.head_fixed + self.head_row * rows

    def chain(self, width: int, n_draft: int, n_accepted: int) -> float:
        """A chain pass: the lazy head's second batch only when the first was accepted whole."""
        rows = n_draft + 1
        if rows <= self.first_rows:
            return self.body(width) + self.head(rows)
        rest = self.head(rows - self.first_rows) if n_accepted >= self.first_rows - 1 else 0.0
        return self.body(width) + self.head(self.first_rows) + rest

    def curve(self, max_draft: int) -> tuple[float, ...]:
        """Cost of a chain pass with k draft tokens (index k) relative to one token, every head row paid."""
        one = self.body(1) + self.head(1)
        return tuple(round((self.body(k + 1) + self.head(k + 1)) / one, 4) for k in range(max_draft + 1))

    def tree(self, width: int, n_draft: int) -> float:
        """A tree pass: the head over every row."""
        return self.body(width) + self.head(n_draft + 1)


TASKS = ("snips", "e2e", "e2e-input")


def task_rows(task: str, n: int, offset: int, extra_corpus: Path | None = None) -> tuple[Any, list[str]]:
    """The corpus to draft from and the prompts' inputs, as the README's benchmarks take them.

    `extra_corpus`: {input, output} rows (e.g. `tasc distill`'s answers of the model to the corpus's inputs)
    drafted from besides the task corpus.
    """
    from tasc.core.corpus import load_corpus, references_by_input, select_split

    if task == "snips":
        corpus = load_corpus(DATA / "snips" / "train.jsonl")
        inputs = list(references_by_input(load_corpus(DATA / "snips" / "valid.jsonl")))
    elif task in ("e2e", "e2e-input"):  # E2E dev split by entity (held-out restaurant names) or by input
        dev, by = load_corpus(DATA / "e2e" / "dev.jsonl"), "entity" if task == "e2e" else "input"
        corpus = select_split(dev, "train", 0.1, 0, by)
        inputs = list(references_by_input(select_split(dev, "heldout", 0.1, 0, by)))
    else:
        raise SystemExit(f"unknown task {task!r}: {', '.join(TASKS)}")
    if extra_corpus is not None:
        extra = load_corpus(extra_corpus)
        if corpus.inputs is None or extra.inputs is None:
            raise SystemExit("--extra-corpus needs {input, output} rows, as the task corpus has")
        corpus = corpus.plus(extra)
    return corpus, inputs[offset : offset + n]


def greedy_answers(lm: Any, res: Any, inputs: Sequence[str], path: Path) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, greedy answer ids) per input, generated once (by TASC-spec: the same tokens) and cached."""
    if path.exists():
        return [(p, a) for p, a in json.loads(path.read_text())]
    from tasc.methods import METHODS, build_drafter
    from tasc.spec.decode import DecodeConfig, PrefixCache, generate

    prefix = PrefixCache(lm.model, lm.prompt_format.shared_prefix_ids(lm.tokenizer))
    drafter = build_drafter(METHODS["tasc-spec"], res)
    rows = []
    for text in inputs:
        ids = lm.prompt_format.prompt_ids(lm.tokenizer, text)
        rows.append((ids, generate(lm.model, ids, drafter, DecodeConfig(128), lm.eos_token_id, prefix).tokens))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return rows


def replay(drafter: Any, rows: Sequence[tuple[list[int], list[int]]], cached: int, cost: PassCost,
           max_new_tokens: int = 128) -> dict[str, float]:
    """Run the drafter over the answers as the verify loop would; passes, tokens and modelled milliseconds."""
    passes = tokens = 0
    spec_ms = greedy_ms = 0.0
    for prompt, answer in rows:
        drafter.start(prompt)
        head, pos = len(prompt) - cached, 0
        greedy_ms += cost.chain(head, 0, 0) + (len(answer) - 1) * cost.chain(1, 0, 0)
        while pos < len(answer):
            room = max_new_tokens - pos - 1
            draft = drafter.propose(room).limit_depth(room) if room > 0 else None
            if draft is not None and draft.parents is not None and head > 1:
                draft = draft.main_chain()  # as the loop does: tree masks are built for a one-token head
            if draft is not None and draft.parents is not None:
                path = draft.path_of(answer[pos:])
                n_acc = len(path)
                emitted = [draft.tokens[i] for i in path] + answer[pos + n_acc : pos + n_acc + 1]
                spec_ms += cost.tree(head + len(draft), len(draft))
            else:
                proposed = draft.tokens if draft is not None else []
                n_acc = 0
                while n_acc < len(proposed) and pos + n_acc < len(answer) and proposed[n_acc] == answer[pos + n_acc]:
                    n_acc += 1
                emitted = answer[pos : pos + n_acc + 1]
                spec_ms += cost.chain(head + len(proposed), len(proposed), n_acc)
            drafter.update(emitted, min(n_acc, len(emitted)))
            pos, passes, head = pos + len(emitted), passes + 1, 1
        tokens += len(answer)
    return {"prompts": len(rows), "tokens": tokens, "passes": passes, "tokens_per_pass": round(tokens / passes, 3),
            "modelled_s": round(spec_ms / 1000, 2), "modelled_speedup": round(greedy_ms / spec_ms, 3)}


def parse_cost(text: str | None) -> PassCost:
    """A PassCost from "fixed,flat,slope,head_fixed,head_row" (the defaults for None)."""
    if not text:
        return PassCost()
    parts = text.split(",")
    if len(parts) != 5:
        raise SystemExit(f"--cost takes 5 comma-separated numbers, got {text!r}")
    fixed, flat, slope, head_fixed, head_row = (float(v) for v in parts)
    return PassCost(fixed, int(flat), slope, head_fixed, head_row)


def parse_settings(pairs: Sequence[str], cost: PassCost | None = None) -> dict[str, Any]:
    """`name=value` pairs into SpecConfig fields of the field's type (`verify_costs=model`: `cost`'s curve)."""
    from tasc.spec.drafts import SpecConfig

    types = {f.name: type(getattr(SpecConfig(), f.name)) for f in fields(SpecConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types:
            raise SystemExit(f"unknown SpecConfig field {name!r}")
        kind = types[name]
        if name == "verify_costs":  # a comma-separated curve, or "model": PassCost's own (made below)
            out[name] = value if value == "model" else tuple(float(v) for v in value.split(","))
        else:
            out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    if out.get("verify_costs") == "model":  # as long as the longest draft these settings allow
        out["verify_costs"] = (cost or PassCost()).curve(out.get("max_draft", SpecConfig().max_draft))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Replay one setting on one prompt set and print the figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--extra-corpus", type=Path, help="{input, output} JSONL drafted from besides the task corpus")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--answers", type=Path, help="cached greedy answers (default runs/replay/<task>-<offset>-<n>.json)")
    p.add_argument("--cost", metavar="FIXED,FLAT,SLOPE,HEAD_FIXED,HEAD_ROW",
                   help="this host's pass cost in ms (default: PassCost's): the decoder body's time flat up to FLAT tokens, "
                        "its slope past them, and the output head's fixed and per-row time")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE", help="a SpecConfig setting")
    args = p.parse_args(argv)

    from tasc.core.models import load_model
    from tasc.methods import METHODS, Resources, build_drafter
    from tasc.spec.drafts import SpecConfig, build_corpus_index
    from tasc.spec.ngram_index import normalised_keys

    corpus, inputs = task_rows(args.task, args.n, args.offset, args.extra_corpus)
    lm = load_model(args.model)
    index = build_corpus_index(lm.tokenizer, corpus.outputs, corpus.inputs, lm.prompt_format)
    keys = normalised_keys(lm.tokenizer)
    res = Resources(lm, index=index, context_keys=keys)
    rows = greedy_answers(lm, res, inputs, args.answers or ROOT / "runs" / "replay" / f"{args.task}-{args.offset}-{args.n}.json")
    cost = parse_cost(args.cost)
    spec = SpecConfig(**parse_settings(args.settings, cost)).check()
    drafter = build_drafter(METHODS["tasc-spec"], replace(res, spec=spec))
    cached = len(lm.prompt_format.shared_prefix_ids(lm.tokenizer))
    print(json.dumps({"task": args.task, "offset": args.offset, "settings": args.settings,
                      "extra_corpus": str(args.extra_corpus) if args.extra_corpus else None,
                      "cost": args.cost, **replay(drafter, rows, cached, cost)}))


if __name__ == "__main__":
    main()
