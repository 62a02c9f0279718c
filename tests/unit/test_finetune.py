"""Fine-tune on tiny models: loss masking, training that learns, LoRA merge, cancel, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tasc.core.corpus import parse_corpus_bytes
from tasc.core.errors import Cancelled, CorpusError
from tasc.core.models import load_model, read_meta
from tasc.core.prompts import PromptFormat
from tasc.ft.finetune import IGNORE, FinetuneConfig, PadCollator, answer_loss, build_examples, finetune, last_checkpoint

ROOT = Path(__file__).resolve().parents[2]
ROWS = [{"input": f"play song {i}", "output": '{"intent": "PlayMusic", "n": "%d"}' % (i % 3)} for i in range(24)]


def corpus(rows=ROWS):
    return parse_corpus_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(), "rows.jsonl")


def test_examples_mask_the_prompt_and_end_with_eos(tiny_lm):
    fmt = PromptFormat().resolved(tiny_lm.tokenizer)
    examples, cut = build_examples(tiny_lm.tokenizer, fmt, [("play jazz", "ok")], max_length=256)
    ex = examples[0]
    prompt = fmt.prompt_ids(tiny_lm.tokenizer, "play jazz")
    assert cut == 0 and ex.input_ids[: len(prompt)] == prompt
    assert ex.labels[: len(prompt)] == [IGNORE] * len(prompt)
    assert ex.labels[len(prompt) :] == ex.input_ids[len(prompt) :]
    assert ex.labels[-1] == tiny_lm.tokenizer.eos_token_id


def test_examples_cut_to_max_length_and_drop_prompt_only(tiny_lm):
    fmt = PromptFormat().resolved(tiny_lm.tokenizer)
    n_prompt = len(fmt.prompt_ids(tiny_lm.tokenizer, "x"))
    examples, cut = build_examples(tiny_lm.tokenizer, fmt, [("x", "a long answer " * 20), ("x" * 400, "y")], n_prompt + 3)
    assert cut == 2 and len(examples) == 1 and len(examples[0].input_ids) == n_prompt + 3


def test_collator_pads_right_with_ignored_labels():
    batch = PadCollator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["logits_to_keep"].tolist() == [0, 1]  # row 0's logits at 0 predict its first answer token


def test_logits_to_keep_starts_at_the_first_answer_position_of_the_batch():
    rows = [{"input_ids": [1, 2, 3, 4, 5, 6], "labels": [IGNORE] * 4 + [5, 6]},
            {"input_ids": [1, 2, 3, 4], "labels": [IGNORE] * 2 + [3, 4]}]
    assert PadCollator(pad_id=0)(rows)["logits_to_keep"].tolist() == [1, 2, 3, 4]  # row 1's answer starts at 2


def test_answer_loss_equals_the_models_own_loss(tiny_lm):
    fmt = PromptFormat().resolved(tiny_lm.tokenizer)
    examples, _ = build_examples(tiny_lm.tokenizer, fmt, [("play jazz now please", "ok"), ("x", '{"a": "b c"}')], 256)
    batch = PadCollator(pad_id=0)([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    model = tiny_lm.model
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    kept = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["logits_to_keep"])
    assert kept.logits.shape[1] == len(batch["logits_to_keep"]) < batch["input_ids"].shape[1]
    assert torch.allclose(answer_loss(kept, batch["labels"]), full, atol=1e-5)
    n = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert torch.allclose(answer_loss(kept, batch["labels"], num_items_in_batch=2 * n), full / 2, atol=1e-5)


def test_bf16_autocast_where_the_device_computes_bf16(monkeypatch):
    from tasc.core import models

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert models.trains_in_bf16("cpu") and FinetuneConfig().bf16_on("cpu")
    assert not FinetuneConfig(precision="fp32").bf16_on("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not models.trains_in_bf16("cpu") and not FinetuneConfig().bf16_on("cpu")
    with pytest.raises(ValueError, match="precision"):
        FinetuneConfig(precision="fp16").check()


def test_config_checks_name_the_bad_value():
    with pytest.raises(ValueError, match="steps"):
        FinetuneConfig(steps=0).check()
    with pytest.raises(ValueError, match="learning_rate"):
        FinetuneConfig(learning_rate=-1.0).check()
    assert FinetuneConfig(lora=True).lr == 1e-3 and FinetuneConfig().lr == 2e-4


def test_full_finetune_learns_and_saves_a_plain_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    events = []
    result = finetune(str(tiny_model_dir), corpus(), tmp_path / "ft", FinetuneConfig(steps=30, learning_rate=3e-3, log_every=2, batch_size=4),
                      device="cpu", on_progress=events.append)
    losses = [loss for _, loss in result["losses"]]
    assert losses[-1] < 0.5 * losses[0]  # the tiny model memorises the rows
    assert events[-1].done == 30 and events[-1].total == 30 and "loss" in events[-1].metrics
    out = tmp_path / "ft"
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin")) and not (out / "checkpoints").exists()
    meta = read_meta(out)
    assert meta["prompt_format"]["style"] == "plain" and meta["finetune"]["steps"] == 30
    plain = AutoModelForCausalLM.from_pretrained(out)  # no TASC needed to load it
    assert plain.config.vocab_size == load_model(str(tiny_model_dir), device="cpu").model.config.vocab_size


def test_lora_finetune_is_merged(tiny_model_dir, tmp_path):
    base = load_model(str(tiny_model_dir), device="cpu")
    finetune(str(tiny_model_dir), corpus(), tmp_path / "lora", FinetuneConfig(steps=6, lora=True, lora_rank=4, batch_size=4), device="cpu")
    out = tmp_path / "lora"
    assert not (out / "adapter_config.json").exists()
    tuned = load_model(str(out), device="cpu")
    keys = set(tuned.model.state_dict())
    assert keys == set(base.model.state_dict())  # merged: a plain Llama, no lora_ keys
    changed = [k for k in keys if not torch.equal(tuned.model.state_dict()[k], base.model.state_dict()[k])]
    assert any("q_proj" in k for k in changed)  # the adapters were trained and merged in


def test_cancel_saves_a_checkpoint_and_resume_finishes(tiny_model_dir, tmp_path):
    cancel = threading.Event()
    out = tmp_path / "run"
    config = FinetuneConfig(steps=12, save_every=100, batch_size=4)

    def stop_at_5(p):
        if p.done >= 5:
            cancel.set()

    with pytest.raises(Cancelled, match="step 5/12"):
        finetune(str(tiny_model_dir), corpus(), out, config, device="cpu", on_progress=stop_at_5, cancel=cancel)
    assert last_checkpoint(out).name == "checkpoint-5"
    with pytest.raises(ValueError, match="--resume"):
        finetune(str(tiny_model_dir), corpus(), out, config, device="cpu")  # never silently overwrite a run
    result = finetune(str(tiny_model_dir), corpus(), out, config, device="cpu", resume=True)
    assert result["steps"] == 12 and result["resumed_from_step"] == 5


@pytest.mark.parametrize("every_s, kept", [(1e-9, ["checkpoint-4", "checkpoint-5"]), (1e9, [])])
def test_checkpoints_by_time(tiny_model_dir, tmp_path, every_s, kept):
    """With no step interval, a checkpoint is written once `save_every_s` passed since the last (none at the end:
    the model itself is saved then); Trainer keeps the last two."""
    out = tmp_path / "run"
    config = FinetuneConfig(steps=6, batch_size=2, save_every_s=every_s, keep_checkpoints=True)
    result = finetune(str(tiny_model_dir), corpus(), out, config, device="cpu")
    wall = result["wall_s"]  # rounded to 0.1 s
    assert 12 / (wall + 0.05) <= result["samples_per_s"] <= 12 / max(wall - 0.05, 1e-3)
    found = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) if (out / "checkpoints").exists() else []
    assert found == kept


def test_last_checkpoint_skips_a_partly_written_one(tmp_path):
    for step, state in ((5, '{"global_step": 5}'), (10, '{"global_st'), (15, None)):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert last_checkpoint(tmp_path).name == "checkpoint-5"  # 10 has a torn state file, 15 none
    assert last_checkpoint(tmp_path / "nothing") is None


def test_output_only_corpus_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(CorpusError, match="outputs only"):
        finetune(str(tiny_model_dir), parse_corpus_bytes(b"a\nb\n", "o.txt"), tmp_path / "x", device="cpu")


def _cli(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tasc", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_killed_cli_run_resumes_and_finishes(tiny_model_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 10))
    out = tmp_path / "killed"
    args = ["finetune", "--model", str(tiny_model_dir), "--corpus", str(rows), "--out", str(out), "--steps", "400",
            "--save-every", "3", "--batch-size", "2", "--device", "cpu"]
    proc = _cli(*args)
    deadline = time.time() + 300  # generous: a loaded CI machine starts Python slowly
    while time.time() < deadline and (last_checkpoint(out) is None or int(last_checkpoint(out).name.split("-")[1]) < 6):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no clean-up code runs: a hard crash
    proc.wait()
    killed_at = int(last_checkpoint(out).name.split("-")[1])
    assert 6 <= killed_at < 400
    result_file = tmp_path / "result.json"
    done = _cli(*args, "--resume", "--json", str(result_file))
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    result = json.loads(result_file.read_text())
    assert result["steps"] == 400 and result["resumed_from_step"] >= killed_at
    assert (out / "model.safetensors").is_file()


def test_cli_bad_input_is_one_line(tiny_model_dir, tmp_path):
    (tmp_path / "o.txt").write_text("just outputs\n")
    proc = _cli("finetune", "--model", str(tiny_model_dir), "--corpus", str(tmp_path / "o.txt"), "--out", str(tmp_path / "o"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "error:" in err and "outputs only" in err and "Traceback" not in err


def test_faithful_only_trains_on_references_that_state_their_input(tiny_model_dir, tmp_path):
    """--faithful-only: the unfaithful rows (an attribute left out, one invented) never reach training."""
    from tasc.core.corpus import Corpus, compute_stats

    rows = [("name[Aromi], eatType[pub], area[riverside]", "Aromi is a pub by the river."),
            ("name[Aromi], eatType[pub], area[riverside]", "Aromi is a pub."),  # area missing
            ("name[Zizzi], food[Italian]", "Zizzi serves Italian food."),
            ("name[Zizzi], food[Italian]", "Zizzi is a cheap Italian pub.")]  # price and eatType invented
    inputs, outputs = [i for i, _ in rows], [o for _, o in rows]
    e2e = Corpus(outputs, inputs, "e2e-like", compute_stats(outputs, inputs))
    config = FinetuneConfig(steps=2, batch_size=2, faithful_only=True)
    result = finetune(str(tiny_model_dir), e2e, tmp_path / "faithful", config, device="cpu")
    assert result["train_rows"] == 2 and "faithful rows: 2 of 4" in result["corpus"]
    assert result["config"]["faithful_only"] is True


def test_data_to_text_augmentation_reaches_training(tiny_model_dir, tmp_path):
    """--attribute-dropout and --new-names: the training rows are the faithful ones plus their dropout copies,
    half of them renamed; the run's figures say so and the stored config keeps both for a resume."""
    from tasc.core.corpus import Corpus, compute_stats

    rows = [(f"name[{n}], eatType[coffee shop], food[Italian], area[riverside]",
             f"{n} is a coffee shop that serves Italian food by the river.") for n in ("Aromi", "Zizzi", "Cotto Bar")]
    inputs, outputs = [i for i, _ in rows], [o for _, o in rows]
    e2e = Corpus(outputs, inputs, "e2e-like", compute_stats(outputs, inputs))
    config = FinetuneConfig(steps=2, batch_size=2, faithful_only=True, attribute_dropout=True, new_names=True)
    result = finetune(str(tiny_model_dir), e2e, tmp_path / "augmented", config, device="cpu")
    assert result["train_rows"] == 6 and "+3 attribute-dropout copies" in result["corpus"]
    assert "rows renamed" in result["corpus"]
    assert result["config"]["attribute_dropout"] is True and result["config"]["new_names"] is True


def test_the_apps_recipes_train_data_to_text_on_faithful_rows(data_dir):
    from studio.task_model import recipe
    from tasc.core.corpus import load_corpus
    from tasc.ft.finetune import data_to_text_options

    e2e, snips = load_corpus(data_dir / "e2e" / "dev.jsonl"), load_corpus(data_dir / "snips" / "valid.jsonl")
    assert all(data_to_text_options(e2e).values()) and not any(data_to_text_options(snips).values())
    for on_gpu in (False, True):
        e2e_recipe, snips_recipe = recipe(on_gpu, e2e), recipe(on_gpu, snips)
        assert e2e_recipe.faithful_only and e2e_recipe.attribute_dropout and e2e_recipe.new_names
        assert not (snips_recipe.faithful_only or snips_recipe.attribute_dropout or snips_recipe.new_names)


def test_cli_precision_fp32_trains_without_autocast(tiny_model_dir, tmp_path, capsys):
    from tasc.cli import main

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:8]), encoding="utf-8")
    args = ["finetune", "--model", str(tiny_model_dir), "--corpus", str(rows), "--steps", "2", "--batch-size", "2",
            "--device", "cpu", "--precision", "fp32", "--out", str(tmp_path / "ft"), "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["config"]["precision"] == "fp32" and result["bf16"] is False


def test_teacher_answers_join_the_training_rows(tiny_model_dir, tmp_path):
    """--teacher: the teacher's greedy answer to each distinct input is one more training row; the answers are
    written under the run's checkpoints (so a killed run resumes them) and removed with them at the end."""
    from tasc.core.corpus import Corpus, compute_stats
    from tasc.core.models import load_model
    from tasc.ft.distill import read_answers
    from tasc.spec.decode import DecodeConfig, generate
    from tasc.spec.drafts import SpecConfig, tasc_drafter

    rows = ROWS[:6] + ROWS[:2]  # 6 distinct inputs, two of them twice
    inputs, outputs = [r["input"] for r in rows], [r["output"] for r in rows]
    corpus = Corpus(outputs, inputs, "rows", compute_stats(outputs, inputs))
    seen: list[str] = []
    config = FinetuneConfig(steps=2, batch_size=2, teacher=str(tiny_model_dir), keep_checkpoints=True)
    out = tmp_path / "student"
    result = finetune(str(tiny_model_dir), corpus, out, config, device="cpu", on_progress=lambda p: seen.append(p.task))
    assert result["train_rows"] == 8 + 6 and f"+6 answers of {tiny_model_dir}" in result["corpus"]
    assert "distill" in seen and "finetune" in seen[seen.index("distill"):]
    answers = read_answers(out / "checkpoints" / "teacher_answers.jsonl")
    assert list(answers) == list(dict.fromkeys(inputs))
    teacher = load_model(str(tiny_model_dir), device="cpu", dtype=torch.float32)  # the answers are its greedy ones
    ids = teacher.prompt_format.prompt_ids(teacher.tokenizer, inputs[0])
    greedy = generate(teacher.model, ids, tasc_drafter(teacher.tokenizer, None, SpecConfig(use_corpus=False)),
                      DecodeConfig(128), teacher.eos_token_id)
    assert answers[inputs[0]] == teacher.tokenizer.decode(greedy.tokens, skip_special_tokens=True).strip()
    assert result["config"]["teacher"] == str(tiny_model_dir)
