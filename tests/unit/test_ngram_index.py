"""The corpus suffix automaton and the context index, driven with plain lists of ints."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tasc.spec.ngram_index import START, ContextIndex, CorpusIndex, NeighbourIndex


def brute_force_continuations(seqs, suffix):
    """Counts of the token after each occurrence of `suffix` in START+seq+[eos] streams."""
    counts = {}
    for seq in seqs:
        stream = [START] + list(seq) + [0]
        for i in range(len(stream) - len(suffix)):
            if stream[i : i + len(suffix)] == list(suffix):
                nxt = stream[i + len(suffix)]
                counts[nxt] = counts.get(nxt, 0) + 1
    return counts


def longest_match(seqs, query):
    """Longest suffix of query occurring (followed by a token) in the corpus, by brute force."""
    for n in range(len(query), 0, -1):
        if brute_force_continuations(seqs, query[-n:]):
            return n
    return 0


def test_predicts_most_frequent_continuation():
    idx = CorpusIndex([[5, 6, 7], [5, 6, 8], [5, 6, 7]], eos_id=0)
    pred = idx.predict(idx.walk(idx.start_state(), [5, 6]))
    assert (pred.token, pred.support, pred.match_len) == (7, 3, 3)
    assert abs(pred.share - 2 / 3) < 1e-9


def test_start_of_answer_and_end_of_answer_are_predicted():
    idx = CorpusIndex([[9, 1], [9, 2], [3]], eos_id=0)
    assert idx.predict(idx.start_state()).token == 9
    assert idx.predict(idx.walk(idx.start_state(), [3])).token == 0  # EOS after a whole answer


def test_match_shortens_when_broken_and_recovers():
    idx = CorpusIndex([[1, 2, 3, 4]], eos_id=0)
    state = idx.walk(idx.start_state(), [1, 2, 99])  # 99 never occurs: no match
    assert idx.predict(state) is None
    state = idx.walk(state, [3])
    assert idx.predict(state).token == 4 and state[1] == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=12), min_size=1, max_size=8),
    st.lists(st.integers(1, 5), min_size=1, max_size=8),
)
def test_automaton_agrees_with_brute_force(seqs, query):
    idx = CorpusIndex(seqs, eos_id=0)
    state = idx.walk(idx.start_state(), query)
    full = [START] + query
    n = longest_match(seqs, full)
    pred = idx.predict(state)
    if n == 0:
        assert pred is None
        return
    counts = brute_force_continuations(seqs, full[-n:])
    assert pred.match_len == n
    assert pred.support == sum(counts.values())
    assert counts[pred.token] == max(counts.values())


def test_context_index_uses_most_recent_occurrence_and_longest_suffix():
    ctx = ContextIndex(max_ngram=3)
    ctx.extend([1, 2, 3, 9, 2, 4, 1, 2])
    pred = ctx.predict(ctx.tail_keys())
    assert (pred.token, pred.match_len) == (3, 2)  # [1, 2] matched: longer than [2] alone
    ctx.extend([5, 2])
    pred = ctx.predict(ctx.tail_keys())
    assert pred.token == 5 and pred.match_len == 1  # most recent "2" is followed by 5


def test_context_index_is_incremental():
    rng = random.Random(1)
    tokens = [rng.randrange(4) for _ in range(200)]
    one_shot, incremental = ContextIndex(4), ContextIndex(4)
    one_shot.extend(tokens)
    for t in tokens:
        incremental.extend([t])
    assert one_shot.predict(one_shot.tail_keys()) == incremental.predict(incremental.tail_keys())


def test_context_keys_normalise_tokens():
    key_of = [0, 1, 1, 3, 4]  # tokens 1 and 2 are the same word with and without a space
    ctx = ContextIndex(max_ngram=2, key_of=key_of)
    ctx.extend([3, 2, 4])  # "x miles davis"
    assert ctx.predict(ctx.advance(ctx.tail_keys(), 1)).token == 4  # "miles" -> " davis"


def test_runner_up_is_the_second_most_frequent_continuation():
    idx = CorpusIndex([[1, 2]] * 5 + [[1, 3]] * 3 + [[1, 4]], eos_id=0)
    state = idx.walk(idx.start_state(), [1])
    assert idx.predict(state).token == 2
    runner = idx.predict_runner_up(state)
    assert runner.token == 3 and abs(runner.share - 3 / 9) < 1e-9
    assert idx.predict_runner_up(idx.walk(idx.start_state(), [1, 2])) is None  # only EOS follows


def test_neighbours_rank_rows_by_shared_rare_tokens():
    # token 1 is in every input (a template word), 50+ are rare content words
    inputs = [[1, 50, 51], [1, 52, 53], [1, 50, 54], [1, 55], [1, 56], [1, 57], [1, 58], [1, 59], [1, 60], [1, 61], [1, 62]]
    outputs = [[100 + i] for i in range(len(inputs))]
    nn = NeighbourIndex(inputs, outputs, max_df=0.3)
    assert nn.nearest([1, 50, 51, 9], k=2) == [[100], [102]]  # both share 50; row 0 also shares 51
    assert nn.nearest([1, 52], k=1) == [[101]]
    assert nn.nearest([1, 9], k=3) == []  # nothing informative in common


def test_neighbours_equal_a_plain_scoring_of_every_row_ties_to_the_earlier_row():
    """The vectorised scores are the inverted index's sums: checked against scoring each row by hand."""
    import math
    import random

    rng = random.Random(7)
    inputs = [[1] + rng.sample(range(2, 40), rng.randint(1, 5)) for _ in range(300)]
    inputs += [list(inputs[5]), list(inputs[5])]  # identical inputs: their scores tie
    outputs = [[1000 + i] for i in range(len(inputs))]
    nn = NeighbourIndex(inputs, outputs, max_df=0.1)
    n = len(inputs)
    df = {t: sum(t in set(ids) for ids in inputs) for t in range(1, 40)}
    idf = {t: math.log(1 + n / d) for t, d in df.items() if 0 < d <= int(0.1 * n)}
    norm = [math.sqrt(sum(idf.get(t, 0.0) for t in set(ids))) or 1.0 for ids in inputs]
    for query in [inputs[5], [1, 3, 7, 11], [1, 2], rng.sample(range(2, 40), 6)]:
        score = [sum(idf.get(t, 0.0) for t in set(query) & set(ids)) for ids in inputs]
        ranked = sorted((row for row in range(n) if score[row] > 0), key=lambda r: (-round(score[r] / norm[r], 9), r))
        assert nn.nearest(query, k=6) == [outputs[r] for r in ranked[:6]], query
    assert nn.nearest(inputs[5], k=0) == []
