"""scripts/cpu_compile_check.py: one JSON line per mode, a median per width, unknown modes refused."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cpu_compile_check", ROOT / "scripts" / "cpu_compile_check.py")
cpu_compile_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cpu_compile_check)


def test_eager_mode_times_every_width(tiny_model_dir, capsys):
    cpu_compile_check.main(["--model", str(tiny_model_dir), "--modes", "eager", "--widths", "1,3", "--repeats", "2"])
    line = json.loads(capsys.readouterr().out.strip())
    assert line["mode"] == "eager"
    assert set(line["ms"]) == {"1", "3"} and all(ms > 0 for ms in line["ms"].values())
    assert set(line["first_call_s"]) == {"1", "3"}


def test_unknown_modes_are_refused():
    with pytest.raises(SystemExit, match="unknown modes"):
        cpu_compile_check.main(["--modes", "eager,turbo"])


def test_the_custom_op_linears_give_the_model_s_logits():
    import torch

    from tests.tiny import make_tiny_model

    plain = make_tiny_model(vocab_size=120).eval()
    routed = make_tiny_model(vocab_size=120).eval()
    cpu_compile_check.route_linears_through_custom_op(routed)
    ids = torch.randint(0, 120, (1, 7))
    with torch.inference_mode():
        torch.testing.assert_close(routed(ids).logits, plain(ids).logits, rtol=1e-4, atol=1e-4)
