"""Logits on demand: the output head runs only over the draft positions greedy acceptance reaches.

A verify pass of a chain draft needs the model's argmax at the pending token and at each draft token
up to the first mismatch, not beyond it. A 135M model's output head (576 -> 49152, tied to the
embeddings) is a fifth of a token's FLOPs, and a CPU pass is compute-bound once it is a dozen tokens
wide, while a pass of 30-odd draft tokens keeps 7 on average. So the decoder body runs over the whole
draft (every position's keys and values go to the cache), the head over the first rows, and over the
rest only when every draft token so far was accepted. Each row is the same `lm_head(hidden)` the model's
own forward computes, so greedy output is unchanged.

Only for models whose logits are exactly `lm_head(last hidden state)` (no soft-capping, no scaling):
the families listed in `PLAIN_HEAD_TYPES`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

# transformers model types whose forward returns lm_head(norm(decoder(x))) and nothing more
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
FIRST_ROWS = 8  # head rows of the first batch: the pending token and 7 draft tokens


def lazy_head_supported(model: Any) -> bool:
    """Whether a verify pass of this model may split body and head: a plain-head family, on a CPU."""
    config = model.config
    if getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES or model.device.type != "cpu":
        return False
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return False
    return isinstance(model.get_output_embeddings(), torch.nn.Linear) and hasattr(model, "get_decoder")


class LazyLogits:
    """The last hidden states of a pass, turned into logits row batch by row batch when asked."""

    def __init__(self, hidden: torch.Tensor, head: torch.nn.Module, first_rows: int = FIRST_ROWS) -> None:
        """hidden: (n, d) final-norm states at the pending token and each draft token; head: the model's lm_head."""
        self.hidden, self.head, self.first_rows = hidden, head, max(1, first_rows)
        self.preds: list[int] = []  # argmax of the rows computed so far

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def extend(self) -> None:
        """Compute the next batch of rows: the first `first_rows`, then all the rest in one call."""
        start = len(self.preds)
        stop = min(len(self), start + self.first_rows) if start == 0 else len(self)
        self.preds += self.head(self.hidden[start:stop]).argmax(-1).tolist()


def accept_greedy_lazy(draft: Sequence[int], logits: LazyLogits) -> tuple[int, int]:
    """`accept_greedy` over lazily computed rows: the accepted draft length and the model's token after it."""
    n = 0
    while True:
        if n == len(logits.preds):
            logits.extend()
        while n < len(draft) and n < len(logits.preds) and draft[n] == logits.preds[n]:
            n += 1
        if n < len(logits.preds):
            return n, logits.preds[n]


def body_forward(model: Any, inputs: torch.Tensor, cache: Any, rows: int) -> LazyLogits:
    """Run the decoder body over `inputs` (1, T) and keep the last `rows` hidden states for a lazy head."""
    out = model.get_decoder()(input_ids=inputs, past_key_values=cache, use_cache=True)
    return LazyLogits(out.last_hidden_state[0, -rows:], model.get_output_embeddings())
