"""Model loading: directories, prompt formats stored with models, device choice, clear errors."""

import pytest

from tasc.core.errors import ModelError
from tasc.core.models import load_model, pick_device, read_meta, resolve_model_path, write_meta
from tasc.core.prompts import PromptFormat


def test_tiny_model_loads_with_plain_prompt(tiny_lm):
    assert tiny_lm.device == "cpu"
    assert tiny_lm.prompt_format.style == "plain"  # no chat template on the tiny tokenizer
    ids = tiny_lm.prompt_format.prompt_ids(tiny_lm.tokenizer, "play jazz")
    assert tiny_lm.tokenizer.decode(ids).endswith("Output: ")


@pytest.mark.parametrize("fmt", [PromptFormat(), PromptFormat(system=None, template="Q: {input} ?", shots=(("a b", "c"),))])
def test_shared_prefix_starts_every_prompt_and_stops_before_the_input(tiny_lm, fmt):
    prefix = fmt.shared_prefix_ids(tiny_lm.tokenizer)
    assert prefix
    for text in ("play jazz", "Q", "7", "été", ""):
        ids = fmt.prompt_ids(tiny_lm.tokenizer, text)
        assert ids[: len(prefix)] == prefix
    assert "jazz" not in tiny_lm.tokenizer.decode(prefix)


def test_prompt_format_round_trips_through_meta(tmp_path):
    fmt = PromptFormat(style="plain", system=None, template="Q: {input}", shots=(("a", "b"),))
    write_meta(tmp_path, {"prompt_format": fmt.to_dict()})
    assert PromptFormat.from_dict(read_meta(tmp_path)["prompt_format"]) == fmt


def test_prompt_format_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown prompt format keys"):
        PromptFormat.from_dict({"stlye": "chat"})


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope" / "model"))


def test_file_instead_of_directory_is_a_clear_error(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        load_model(str(f))


def test_cpu_is_default_without_gpu():
    import torch

    assert pick_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == "cpu"
