"""scripts/replay_drafts.py: a drafter's passes over fixed greedy answers equal the verify loop's."""

import importlib.util
import sys
from pathlib import Path

import torch

from tasc.spec.decode import DecodeConfig, generate
from tasc.spec.drafts import NoDraft, SpecConfig, TascDrafter
from tasc.spec.ngram_index import CorpusIndex

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("replay_drafts", ROOT / "scripts" / "replay_drafts.py")
replay_drafts = importlib.util.module_from_spec(_spec)
sys.modules["replay_drafts"] = replay_drafts  # dataclasses look their module up while the class is made
_spec.loader.exec_module(replay_drafts)


def test_replay_counts_the_passes_the_real_loop_takes(tiny_lm):
    torch.manual_seed(0)
    model, eos = tiny_lm.model, tiny_lm.eos_token_id
    prompts = [[5, 6, 7, 8], [5, 6, 9, 10], [5, 6, 7, 11]]
    rows = []
    for prompt in prompts:
        rows.append((prompt, generate(model, prompt, None, DecodeConfig(24), eos).tokens))
    corpus = [answer for _, answer in rows[:2]]  # two answers are in the corpus: drafts hit, then miss

    def drafter():
        return TascDrafter(CorpusIndex(corpus, eos_id=eos), SpecConfig(neighbours=0))

    loop_drafter = drafter()
    real = sum(generate(model, p, loop_drafter, DecodeConfig(24), eos).forward_passes for p in prompts)
    figures = replay_drafts.replay(drafter(), rows, 0, replay_drafts.PassCost(), max_new_tokens=24)
    assert figures["passes"] == real < figures["tokens"]
    plain = replay_drafts.replay(NoDraft(), rows, 0, replay_drafts.PassCost(), max_new_tokens=24)
    assert plain["passes"] == plain["tokens"] and plain["modelled_speedup"] == 1.0


def test_settings_take_the_field_types():
    assert replay_drafts.parse_settings(["history=0", "token_cost=0.3", "spelling=false"]) == {
        "history": 0, "token_cost": 0.3, "spelling": False}


def test_cost_curves_parse_and_follow_the_pass_cost_model():
    assert replay_drafts.parse_settings(["verify_costs=1,1.1,1.3"]) == {"verify_costs": (1.0, 1.1, 1.3)}
    curve = replay_drafts.PassCost().curve(32)
    assert len(curve) == 33 and curve[0] == 1.0
    assert all(b >= a for a, b in zip(curve, curve[1:], strict=False))  # wider passes never cost less
    assert curve[32] > curve[8] > curve[0]  # past the flat width the body grows
    SpecConfig(verify_costs=curve).check()
    assert replay_drafts.parse_settings(["verify_costs=model", "max_draft=48"])["verify_costs"] == replay_drafts.PassCost().curve(48)


def test_tasks_split_e2e_by_entity_or_input_and_take_an_extra_corpus(tmp_path):
    by_entity, held_entity = replay_drafts.task_rows("e2e", 5, 0)
    by_input, held_input = replay_drafts.task_rows("e2e-input", 5, 0)
    assert not set(held_input) & set(by_input.inputs)  # by input: no prompt is a corpus input
    assert len(by_entity.outputs) != len(by_input.outputs) and held_entity != held_input
    extra = tmp_path / "answers.jsonl"
    extra.write_text('{"input": "name[X]", "output": "X is a pub."}\n', encoding="utf-8")
    corpus, held = replay_drafts.task_rows("e2e-input", 5, 0, extra)
    assert corpus.outputs == by_input.outputs + ["X is a pub."] and corpus.inputs[-1] == "name[X]" and held == held_input
