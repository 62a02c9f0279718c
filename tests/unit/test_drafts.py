"""The TASC drafter: mixing, adaptive length, learning from verdicts."""

from tasc.spec.drafts import CONTEXT, CORPUS, SpecConfig, TascDrafter
from tasc.spec.ngram_index import CorpusIndex


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


def test_tree_branches_at_the_corpus_runner_up():
    # After [1, 2] the corpus continues with 3 (6 times) or 7 (4 times): a chain bets on 3 alone.
    seqs = [[1, 2, 3, 4, 5]] * 6 + [[1, 2, 7, 8, 9]] * 4
    chain = make(seqs, use_context=False)
    chain.start([])
    assert chain.propose(16).parents is None
    tree = make(seqs, use_context=False, max_branches=2, token_cost=0.01)
    tree.start([])
    draft = tree.propose(16)
    assert draft.tokens[:3] == [1, 2, 3] and draft.parents[:3] == [-1, 0, 1]
    branch = [i for i, p in enumerate(draft.parents) if p == 1 and draft.tokens[i] == 7]
    assert branch, draft
    (b,) = branch
    assert draft.tokens[b + 1] == 8 and draft.parents[b + 1] == b  # the branch goes on with its own chain
    assert draft.path_of([1, 2, 7, 8]) == [0, 1, b, b + 1]


def test_tree_verdicts_teach_both_branches():
    seqs = [[1, 2, 3, 4]] * 6 + [[1, 2, 7, 8]] * 4
    drafter = make(seqs, use_context=False, max_branches=2, token_cost=0.06)  # low enough for a 40% side branch
    drafter.start([])
    draft = drafter.propose(16)
    main3 = drafter.acceptance.cell(CORPUS, drafter.corpus.predict(drafter.corpus.walk(drafter.corpus.start_state(), [1, 2])))
    before = drafter.acceptance.estimate(CORPUS, drafter.corpus.predict(drafter.corpus.walk(drafter.corpus.start_state(), [1, 2])))
    drafter.update([1, 2, 7, 8, 0], 4)  # the model took the side branch all the way
    assert drafter.acceptance._proposed[main3] >= 1 and drafter.acceptance._accepted.get(main3, 0) == 0
    after = drafter.acceptance.estimate(CORPUS, drafter.corpus.predict(drafter.corpus.walk(drafter.corpus.start_state(), [1, 2])))
    assert after < before
    assert len(draft) > 5


def test_tree_offers_both_sources_where_they_disagree():
    # The corpus says the value is 40 41; the prompt holds 50 51 right after the same key 91.
    seqs = [[90, 91, 40, 41, 92]] * 3 + [[90, 91, 60, 61, 92]] * 2
    drafter = make(seqs, max_branches=3, token_cost=0.06)  # low enough for the less likely source's branch
    drafter.start([5, 91, 50, 51, 6])
    draft = drafter.propose(16)
    firsts_after_91 = {draft.tokens[i] for i, p in enumerate(draft.parent_list()) if p >= 0 and draft.tokens[p] == 91}
    assert {40, 50} <= firsts_after_91, draft


def test_draft_tree_helpers():
    from tasc.spec.drafts import Draft

    # 0:a -> 1:b -> 2:c ; 3:x under a ; 4:y under x ; 5:z at the root
    tree = Draft([10, 11, 12, 20, 21, 30], ["corpus"] * 6, [0.9] * 6, [-1, 0, 1, 0, 3, -1])
    assert tree.depths() == [1, 2, 3, 2, 3, 1]
    assert tree.main_chain().tokens == [10, 11, 12] and tree.main_chain().parents is None
    cut = tree.limit_depth(2)
    assert cut.tokens == [10, 11, 20, 30] and cut.parents == [-1, 0, 0, -1]
    assert tree.path_of([10, 20, 21, 99]) == [0, 3, 4] and tree.path_of([30]) == [5] and tree.path_of([99]) == []
    chain = Draft([1, 2, 3], ["corpus"] * 3, [0.5] * 3)
    assert chain.limit_depth(2).tokens == [1, 2] and chain.path_of([1, 2, 7]) == [0, 1] and tree.limit_depth(0).tokens == []


def test_neighbours_answers_guide_the_draft():
    # The corpus's most frequent intent (10) is wrong for this prompt; its neighbours answer 20.
    from tasc.spec.ngram_index import NeighbourIndex

    outputs = [[5, 10, 6]] * 40 + [[5, 20, 6]] * 3
    inputs = [[100 + i, 1] for i in range(40)] + [[90, 91, 1]] * 3
    index = CorpusIndex(outputs, eos_id=0)
    index.neighbours = NeighbourIndex(inputs, outputs)
    plain = TascDrafter(index, SpecConfig(use_context=False, neighbours=0))
    plain.start([90, 91, 2])
    assert plain.propose(8).tokens[:2] == [5, 10]
    guided = TascDrafter(index, SpecConfig(use_context=False, neighbours=3))
    guided.start([90, 91, 2])
    draft = guided.propose(8)
    assert draft.tokens[:3] == [5, 20, 6] and set(draft.sources) == {CORPUS}


def test_acceptance_cells_split_by_support_and_by_word_start():
    """A share of 1.0 from one corpus row is weaker evidence than from many; a copy that starts a new word
    (where a copied value may end) learns apart from one that continues a word."""
    from tasc.spec.drafts import SPELLING, AcceptanceModel
    from tasc.spec.ngram_index import Prediction

    model = AcceptanceModel(word_starts={7})
    one_row, many_rows = Prediction(5, 1.0, 9, 1), Prediction(5, 1.0, 9, 400)
    assert model.cell(CORPUS, one_row) != model.cell(CORPUS, many_rows)
    for _ in range(20):
        model.observe(model.cell(CORPUS, one_row), accepted=False)
    assert model.estimate(CORPUS, one_row) < 0.3 < 0.9 < model.estimate(CORPUS, many_rows)
    new_word, same_word = Prediction(7, 1.0, 2, 1), Prediction(8, 1.0, 2, 1)
    assert model.cell(SPELLING, new_word) != model.cell(SPELLING, same_word)
    assert model.cell(CONTEXT, new_word) != model.cell(CONTEXT, same_word)


def test_word_start_ids_are_the_tokens_with_a_leading_space():
    from tasc.spec.ngram_index import word_start_ids
    from tests.tiny import make_tiny_tokenizer

    tokenizer = make_tiny_tokenizer(["add jazz to my list", "jazz"])
    starts = word_start_ids(tokenizer)
    assert starts and all(tokenizer.decode([i])[:1] in (" ", "\n") for i in starts)
    assert word_start_ids(tokenizer) is starts  # decoded once per tokenizer
