"""The TASC drafter: mixing, adaptive length, learning from verdicts."""

from tasc.drafts import CONTEXT, CORPUS, SpecConfig, TascDrafter
from tasc.ngram_index import CorpusIndex


def make(seqs, **cfg):
    return TascDrafter(CorpusIndex(seqs, eos_id=0), SpecConfig(**cfg))


def test_drafts_a_frequent_answer_whole():
    drafter = make([[7, 8, 9, 10]] * 20)
    drafter.start([1, 2, 3])
    draft = drafter.propose(16)
    assert draft.tokens == [7, 8, 9, 10, 0]
    assert set(draft.sources) == {CORPUS}


def test_switches_to_context_for_copied_values():
    # Corpus: '{ k X }' with varied X; the prompt holds the value 50 51 52.
    seqs = [[90, 91, x, x + 1, 92] for x in range(10, 40, 2)]
    drafter = make(seqs)
    drafter.start([5, 50, 51, 52, 6])
    drafter.update([90, 91], 0)
    drafter.update([50], 0)  # the model picked the value's first token itself
    draft = drafter.propose(8)
    assert draft.tokens[:2] == [51, 52]
    assert draft.sources[:2] == [CONTEXT, CONTEXT]


def test_max_len_and_cap_are_respected():
    drafter = make([list(range(1, 60))] * 5, max_draft=10)
    drafter.start([])
    assert len(drafter.propose(100)) == 10
    assert len(drafter.propose(3)) == 3


def test_low_confidence_stops_the_draft():
    # After token 1 the corpus is split evenly between 10 continuations: not worth drafting.
    drafter = make([[1, t] for t in range(10, 20)], use_context=False, token_cost=0.2)
    drafter.start([])
    drafter.update([1], 0)
    assert drafter.propose(8).tokens == []


def test_rejections_lower_the_estimate_and_shorten_drafts():
    drafter = make([[1, 2, 3, 4, 5, 6, 7, 8]] * 3, use_context=False, token_cost=0.2)
    lengths = []
    for _ in range(8):
        drafter.start([])
        draft = drafter.propose(16)
        lengths.append(len(draft))
        drafter.update([99], 0)  # the model rejects the first token every time
    assert lengths[0] == 9 and lengths[-1] < 2


def test_empty_corpus_and_context_give_empty_draft():
    drafter = TascDrafter(CorpusIndex([], eos_id=0))
    drafter.start([])
    assert drafter.propose(8).tokens == []


def test_draft_ends_at_end_of_answer():
    # The prompt holds EOS (0) followed by more tokens, as a chat template's end-of-turn does: the
    # context would keep drafting past it, but nothing after an EOS can be emitted.
    drafter = make([[7, 8]] * 5, use_corpus=False)
    drafter.start([3, 4, 5, 0, 11, 12, 13, 3, 4])
    draft = drafter.propose(16)
    assert draft.tokens == [5, 0]
    no_stop = TascDrafter(CorpusIndex([[7, 8]] * 5, eos_id=0), SpecConfig(use_corpus=False), stop_ids=())
    no_stop.start([3, 4, 5, 0, 11, 12, 13, 3, 4])
    assert no_stop.propose(16).tokens[:4] == [5, 0, 11, 12]
