"""A pointer-generator copy head for the hybrid's small decoder.

Slot values are copied verbatim from the prompt ("add X to my Y playlist" -> "playlist": "Y"). A
2-layer decoder trained for minutes learns the answer's structure but not to copy: it wrote
"pop punk" for "classical relaxations", a value it had seen in training. The head gives copying a
path of its own (See et al., 2017, "Get To The Point"):

    p(y) = g_gen * softmax(lm_head(h))[y]
         + g_copy * sum over prompt positions i with prompt[i] == y of a_i
         + g_bare * sum over prompt positions i with bare(prompt[i]) == y of a_i

where h is the decoder's last hidden state, a = softmax over prompt positions of
(W_q h)·(W_k h_i) + f(h)·follows_i, and g = softmax(W_g h) chooses between writing from the
vocabulary, copying a prompt token, and copying it without its leading space. The third channel exists because a value starts a JSON string
(`": "classical`) while the same word inside the prompt carries a space (` classical`): byte-level
BPE spells them with different ids.

Special tokens (the chat template's `<|im_end|>`, which is also EOS) are never copied. With them
copyable, a value that ends the input ("add a tune to this is johnny cash") was followed by the
prompt's next token, `<|im_end|>`: the answer stopped inside a JSON string (4% of SNIPS answers
did not parse).

`follows_i` is 1 where the prompt token before position i is the token just written (or its spaced
twin), the rule prompt-lookup decoding drafts by. Content attention alone found a value's first
word but then lost its place: "young at heart heart heart", "classicalations". With the bonus, a
copy that has begun continues along the prompt, and f(h) >= 0 learns when to trust it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

NO_TOKEN = -1  # in `bare_ids`: the token has no leading space, or its bare text is not one token


def bare_token_ids(tokenizer: Any, vocab_size: int) -> list[int]:
    """For each id below vocab_size: the id of the same text without its leading space, else NO_TOKEN."""
    texts = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    first_id: dict[str, int] = {}
    for i, text in enumerate(texts):
        first_id.setdefault(text, i)
    bare = [NO_TOKEN] * vocab_size
    for i, text in enumerate(texts):
        if len(text) > 1 and text[0] == " " and "\ufffd" not in text:  # not a partial UTF-8 byte token
            bare[i] = first_id.get(text[1:], NO_TOKEN)
    return bare


@dataclass
class CopyPrompt:
    """What the head reads of a prompt, computed once per answer (or per training batch).

    Every field is (..., T): one entry per prompt position.
    """

    keys: Any  # (..., T, K) `CopyHead.key` of the decoder states
    ids: Any  # the token ids
    bare: Any  # each id's bare twin (NO_TOKEN: none)
    prev: Any  # the id before each position (NO_TOKEN at the first)
    bare_prev: Any  # the bare twin of `prev`
    copyable: Any  # False at blocked (special) tokens

    def rows(self, index: Any) -> "CopyPrompt":
        """The prompts of these batch rows (one per predicted token in training)."""
        return CopyPrompt(self.keys[index], self.ids[index], self.bare[index], self.prev[index], self.bare_prev[index],
                          self.copyable[index])


class CopyHead(nn.Module):
    """Query/key projections over decoder states, the three-way gate, and the bare-id table (a saved buffer)."""

    bare_ids: torch.Tensor  # buffers (register_buffer): declared for the type checker
    blocked_ids: torch.Tensor

    def __init__(self, hidden: int, bare_ids: Sequence[int], key_dim: int = 64) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, key_dim, bias=False)
        self.key = nn.Linear(hidden, key_dim, bias=False)
        self.gate = nn.Linear(hidden, 3)
        self.follow = nn.Linear(hidden, 1)  # softplus: the bonus for continuing a copy
        nn.init.zeros_(self.follow.weight)
        nn.init.constant_(self.follow.bias, 2.0)  # start with a clear preference for contiguous copies
        self.register_buffer("bare_ids", torch.tensor(list(bare_ids), dtype=torch.long))
        # Not saved: it comes from the tokenizer (`block`), so hybrids saved before it load unchanged.
        self.register_buffer("blocked_ids", torch.zeros(0, dtype=torch.long), persistent=False)
        self.scale = 1.0 / math.sqrt(key_dim)

    def block(self, token_ids: Sequence[int]) -> "CopyHead":
        """Never copy these ids (give it the tokenizer's special ids); returns self."""
        self.blocked_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long, device=self.bare_ids.device)
        return self

    def _bare(self, ids: Any) -> Any:
        """bare_ids of each id; NO_TOKEN for ids past the table (an enriched vocabulary's added rows)."""
        inside = ids < self.bare_ids.numel()
        return torch.where(inside, self.bare_ids[ids.clamp(max=self.bare_ids.numel() - 1)], NO_TOKEN)

    def prompt(self, prompt_hidden: Any, prompt_ids: Any) -> CopyPrompt:
        """The per-prompt pieces of the head, from the decoder states (..., T, H) and ids (..., T) of prompts."""
        prev = torch.cat([torch.full_like(prompt_ids[..., :1], NO_TOKEN), prompt_ids[..., :-1]], dim=-1)
        copyable = ~torch.isin(prompt_ids, self.blocked_ids)
        return CopyPrompt(self.key(prompt_hidden), prompt_ids, self._bare(prompt_ids), prev, self._bare(prev), copyable)

    def follows(self, last_ids: Any, prompt: CopyPrompt) -> Any:
        """1.0 where a prompt position's previous token is the last token written (as is, or spaced in the prompt)."""
        last = last_ids[..., None]
        return ((prompt.prev == last) | (prompt.bare_prev == last)).float()

    def _scores(self, hidden: Any, query_keys: Any, follows: Any) -> Any:
        """Attention logits over prompt positions: content match plus the continue-the-copy bonus."""
        bonus = torch.nn.functional.softplus(self.follow(hidden)).float()  # (..., 1)
        return query_keys.float() * self.scale + bonus * follows

    def log_prob(self, hidden: Any, logits: Any, targets: Any, prompt: CopyPrompt, prompt_mask: Any, last_ids: Any) -> Any:
        """log p(target) under the mixture, for training; one row per predicted token.

        Args:
            hidden: (N, H) decoder states that predict `targets`.
            logits: (N, V) the LM head's logits at those states.
            targets: (N,) target ids.
            prompt: each row's prompt, (N, T) fields.
            prompt_mask: (N, T) True where copying is allowed (the prompt, not padding or the answer).
            last_ids: (N,) the token each row's state was computed on (the one just written).
        Returns:
            (N,) log-probabilities.
        """
        content = torch.einsum("nk,ntk->nt", self.query(hidden), prompt.keys)
        scores = self._scores(hidden, content, self.follows(last_ids, prompt))
        attn = _softmax_over(scores, prompt_mask & prompt.copyable)  # (N, T)
        hit = (prompt.ids == targets[:, None]).float()  # (N, T)
        hit_bare = (prompt.bare == targets[:, None]).float()
        log_gen = torch.log_softmax(logits.float(), -1).gather(-1, targets[:, None])[:, 0]  # (N,)
        log_copy = torch.log((attn * hit).sum(-1) + 1e-9)
        log_bare = torch.log((attn * hit_bare).sum(-1) + 1e-9)
        log_gates = torch.log_softmax(self.gate(hidden).float(), -1)  # (N, 3)
        return torch.logsumexp(log_gates + torch.stack([log_gen, log_copy, log_bare], -1), -1)

    def probs(self, hidden: Any, logits: Any, prompt: CopyPrompt, last_id: int) -> Any:
        """The mixture's distribution over the vocabulary at one decoding step.

        Args:
            hidden: (H,) the decoder's last state.
            logits: (V,) the LM head's logits there.
            prompt: the answer's prompt, (T,) fields, from `prompt` once per answer.
            last_id: the token just written (the last prompt token before the first answer token).
        """
        gates = torch.softmax(self.gate(hidden).float(), -1)  # (3,)
        follows = self.follows(prompt.ids.new_tensor(last_id), prompt)
        attn = _softmax_over(self._scores(hidden, prompt.keys @ self.query(hidden), follows), prompt.copyable)  # (T,)
        p = torch.softmax(logits.float(), -1) * gates[0]
        p = p.index_add(0, prompt.ids, attn * gates[1])
        ok = prompt.bare != NO_TOKEN
        return p.index_add(0, prompt.bare[ok], attn[ok] * gates[2])


def _softmax_over(scores: Any, allowed: Any) -> Any:
    """Softmax of scores over the allowed positions of the last axis; all zeros where none is allowed."""
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)
