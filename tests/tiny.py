"""Tiny random-weight Llama models with a small trained BPE tokenizer, built in seconds for tests."""

from __future__ import annotations

from pathlib import Path

TINY_TEXTS = [
    '{"intent": "PlayMusic", "slots": {"artist": "miles davis", "genre": "jazz"}}',
    '{"intent": "GetWeather", "slots": {"city": "paris", "timeRange": "tomorrow"}}',
    '{"intent": "BookRestaurant", "slots": {"party_size_number": "4", "city": "berlin"}}',
    "The Eagle is a coffee shop near Burger King with a high customer rating.",
    "Blue Spice is a cheap Italian restaurant in the city centre.",
    "play some jazz by miles davis",
    "what is the weather in paris tomorrow",
    "book a table for 4 in berlin",
] * 4


def make_tiny_tokenizer(texts: list[str] | None = None, vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on `texts`, with <|endoftext|> as EOS and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts or TINY_TEXTS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def make_tiny_model(vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 64, tie: bool = True):
    """A random-weight LlamaForCausalLM small enough for CPU unit tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        eos_token_id=0,
        pad_token_id=0,
        bos_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def save_tiny(directory: Path, seed: int = 0, texts: list[str] | None = None, vocab_size: int = 300) -> Path:
    """Write a tiny tokenizer + model as a normal model directory and return it."""
    tokenizer = make_tiny_tokenizer(texts, vocab_size)
    model = make_tiny_model(len(tokenizer), seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
