"""RunDir: the run folder every trainer shares (fresh, resume, refusal, old run-file name, clean-up)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pytest

from tasc.core.run_dir import RunDir


@dataclass
class Config:
    steps: int = 10
    lr: float = 1e-3


def test_a_fresh_run_uses_its_config_and_records_it(tmp_path):
    run = RunDir(tmp_path / "out")
    config = Config(steps=7)
    assert run.start(config, resume=False) is config
    run.write_settings(asdict(config))
    assert run.run_file == tmp_path / "out" / "checkpoints" / "run.json"
    assert json.loads(run.run_file.read_text(encoding="utf-8")) == {"steps": 7, "lr": 1e-3}
    assert run.read_settings() == {"steps": 7, "lr": 1e-3}
    assert run.phase("train") == tmp_path / "out" / "checkpoints" / "train"


def test_resume_continues_with_the_stored_config(tmp_path):
    run = RunDir(tmp_path)
    run.write_settings(asdict(Config(steps=5, lr=0.5)))
    assert run.start(Config(steps=9, lr=0.1), resume=True) == Config(steps=5, lr=0.5)
    # Fields in `keep` come from this call's config (a fine-tune's --steps extends the run).
    assert run.start(Config(steps=9, lr=0.1), resume=True, keep=("steps",)) == Config(steps=9, lr=0.5)


def test_resume_with_nothing_stored_starts_fresh(tmp_path):
    run = RunDir(tmp_path / "empty")
    config = Config()
    assert run.start(config, resume=True) is config
    run.checkpoints.mkdir(parents=True)  # checkpoints but no run file
    assert run.start(config, resume=True) is config


def test_a_fresh_run_over_an_unfinished_one_is_refused(tmp_path):
    run = RunDir(tmp_path)
    run.write_settings(asdict(Config()))
    with pytest.raises(ValueError, match="--resume"):
        run.start(Config(), resume=False)
    # A trainer may say what "unfinished" means (a fine-tune: a complete checkpoint exists).
    assert run.start(Config(steps=3), resume=False, unfinished=False) == Config(steps=3)
    assert run.start(Config(steps=3), resume=True, unfinished=False) == Config(steps=3)  # nothing to continue
    with pytest.raises(ValueError, match="earlier run"):
        RunDir(tmp_path / "other").start(Config(), resume=False, unfinished=True)


def test_the_old_run_file_name_is_still_read(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoints.mkdir()
    (run.checkpoints / "tasc_run.json").write_text(json.dumps(asdict(Config(steps=4, lr=0.2))), encoding="utf-8")
    assert run.read_settings() == {"steps": 4, "lr": 0.2}
    assert run.start(Config(), resume=True) == Config(steps=4, lr=0.2)
    run.write_settings(asdict(Config(steps=6)))  # written under the one current name, which wins
    assert run.run_file.name == "run.json" and run.read_settings() == {"steps": 6, "lr": 1e-3}


def test_latest_checkpoint_is_the_newest_accepted_one(tmp_path):
    run = RunDir(tmp_path)
    for step in (5, 10, 15):
        (run.checkpoints / f"checkpoint-{step}").mkdir(parents=True)
    (run.checkpoints / "checkpoint-x").mkdir()
    (run.checkpoints / "checkpoint-20").write_text("not a folder", encoding="utf-8")
    assert run.latest_checkpoint().name == "checkpoint-15"
    assert run.latest_checkpoint(lambda p: p.name != "checkpoint-15").name == "checkpoint-10"
    assert RunDir(tmp_path / "nothing").latest_checkpoint() is None


def test_clean_up_removes_the_checkpoints_unless_kept(tmp_path):
    run = RunDir(tmp_path)
    run.write_settings(asdict(Config()))
    (run.checkpoints / "train" / "latest").mkdir(parents=True)
    (tmp_path / "model.safetensors").write_text("weights", encoding="utf-8")
    run.clean_up(keep=True)
    assert run.checkpoints.is_dir()
    run.clean_up()
    assert not run.checkpoints.exists() and (tmp_path / "model.safetensors").is_file()
    run.clean_up()  # nothing left to remove: no error
