"""The drafters' fast text codec (`tasc.core.tokenizers.text_codec`): the tokenizer's own output, cheaper."""

from tasc.core.tokenizers import text_codec
from tests.tiny import make_tiny_tokenizer

TEXTS = ['{"intent": "PlayMusic", "slots": {"artist": "miles davis"}}', "play jazz by miles<|endoftext|> now",
         "Café Rouge — 5 stars", "", "   spaced  out  ", "zzqx unseen"]


def reference(tokenizer):
    """What transformers itself returns, as the drafters used to call it."""

    def encode(text):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    return encode, lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False)


def check_same(tokenizer):
    encode, decode = text_codec(tokenizer)
    ref_encode, ref_decode = reference(tokenizer)
    for text in TEXTS:
        ids, offsets = encode(text)
        assert (ids, [tuple(o) for o in offsets]) == ref_encode(text), text
        assert decode(ids) == ref_decode(ids), text
        assert decode(ids[1:]) == ref_decode(ids[1:]), text  # a word cut at any token
    return encode


def test_codec_matches_transformers_on_a_fast_tokenizer_with_special_and_added_tokens():
    tokenizer = make_tiny_tokenizer()
    assert text_codec(tokenizer)[0].__name__ == "encode"  # the backend path is taken
    check_same(tokenizer)
    tokenizer.add_tokens(['"slots": {"', "miles davis"])  # an enriched vocabulary's strings
    encode = check_same(tokenizer)
    assert encode('"slots": {"x')[0][0] == len(tokenizer) - 2  # the added string is one token


def test_a_tokenizer_whose_wrapper_changes_the_text_goes_through_transformers():
    tokenizer = make_tiny_tokenizer()
    tokenizer.clean_up_tokenization_spaces = True
    assert text_codec(tokenizer)[0].__name__ == "slow_encode"
    check_same(tokenizer)
