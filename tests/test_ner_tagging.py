"""Tagging schemes, unit alignment and windows (pure Python, no model)."""

from __future__ import annotations

import itertools
import random

import pytest

from medkit_exp.core.document import Entity, Span
from medkit_exp.text.ner.tagging import (
    UnitLocator,
    build_tag_set,
    decode_tags,
    encode_tags,
    entity_extent,
    infer_scheme,
    resolve_overlaps,
)
from medkit_exp.text.ner.windows import (
    TokenizedText,
    Unit,
    central_window_per_token,
    plan_windows,
    window_tags,
    window_units,
)

SCHEMES = ["iob2", "bilou"]


def test_build_tag_set_puts_o_first():
    assert build_tag_set(["drug", "problem"], "iob2") == ["O", "B-drug", "I-drug", "B-problem", "I-problem"]
    assert build_tag_set(["drug"], "BILOU") == ["O", "B-drug", "I-drug", "L-drug", "U-drug"]


@pytest.mark.parametrize("labels, message", [
    ([], "no entity label given: pass at least one label to tag"),
    (["a", "b", "a"], "duplicate entity labels ['a']: give each label once"),
    (["O"], "invalid entity label 'O': labels must be non-empty strings other than 'O'"),
    ([""], "invalid entity label '': labels must be non-empty strings other than 'O'"),
])
def test_build_tag_set_rejects_bad_labels(labels, message):
    with pytest.raises(ValueError) as error:
        build_tag_set(labels)
    assert str(error.value) == message


def test_unknown_scheme_is_rejected():
    with pytest.raises(ValueError, match="iob2, bilou"):
        build_tag_set(["a"], "bioes")


def test_encode_examples():
    ranges = [(0, 1, "X"), (1, 3, "X"), (4, 5, "Y")]
    assert encode_tags(5, ranges, "iob2") == ["B-X", "B-X", "I-X", "O", "B-Y"]
    assert encode_tags(5, ranges, "bilou") == ["U-X", "B-X", "L-X", "O", "U-Y"]
    assert encode_tags(4, [(0, 4, "X")], "bilou") == ["B-X", "I-X", "I-X", "L-X"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    "ranges",
    [
        [],
        [(0, 1, "X")],  # first unit
        [(5, 6, "X")],  # last unit
        [(0, 6, "Y")],  # everything
        [(0, 1, "X"), (1, 2, "X"), (2, 3, "X")],  # adjacent one-unit entities, same label
        [(0, 2, "X"), (2, 4, "X"), (4, 6, "Y")],  # adjacent multi-unit entities
        [(1, 3, "X"), (3, 4, "Y"), (5, 6, "X")],
    ],
)
def test_round_trip_ranges_tags_ranges(scheme, ranges):
    tags = encode_tags(6, ranges, scheme)
    assert decode_tags(tags, scheme) == ranges


@pytest.mark.parametrize("scheme", SCHEMES)
def test_random_round_trips(scheme):
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 20)
        ranges, pos = [], 0
        while pos < n:
            pos += rng.randint(0, 2)
            length = rng.randint(1, 4)
            if pos + length > n:
                break
            ranges.append((pos, pos + length, rng.choice("XY")))
            pos += length
        assert decode_tags(encode_tags(n, ranges, scheme), scheme) == ranges


def test_decode_is_lenient_with_invalid_predictions():
    assert decode_tags(["I-X", "I-X", "O", "I-Y"], "iob2") == [(0, 2, "X"), (3, 4, "Y")]
    assert decode_tags(["B-X", "I-Y"], "iob2") == [(0, 1, "X"), (1, 2, "Y")]
    assert decode_tags(["L-X", "B-X", "I-X", "O", "I-X"], "bilou") == [(0, 1, "X"), (1, 3, "X"), (4, 5, "X")]
    assert decode_tags(["B-X", "E-X", "S-Y"], "bilou") == [(0, 2, "X"), (2, 3, "Y")]  # BIOES aliases


def test_encode_rejects_overlaps_and_bad_ranges():
    with pytest.raises(ValueError, match="overlaps"):
        encode_tags(5, [(0, 3, "X"), (2, 4, "Y")])
    with pytest.raises(ValueError, match="outside"):
        encode_tags(3, [(2, 4, "X")])


def test_infer_scheme():
    assert infer_scheme(["O", "B-X", "I-X"]) == "iob2"
    assert infer_scheme(["O", "B-X", "I-X", "L-X", "U-X"]) == "bilou"
    assert infer_scheme(["O", "S-X", "E-X"]) == "bilou"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_char_spans_to_subtokens_and_back(scheme):
    # "Le paracetamol calme la fièvre" with sub-tokens: para ##ce ##tam ##ol, fi ##ev ##re
    text = "Le paracetamol calme la fièvre"
    units = [(0, 2), (3, 7), (7, 9), (9, 12), (12, 14), (15, 20), (21, 23), (24, 26), (26, 28), (28, 30)]
    gold = [(3, 14, "drug"), (24, 30, "problem"), (15, 20, "verb")]
    ranges = sorted((*UnitLocator(units).covering(s, e), label) for s, e, label in gold)
    tags = encode_tags(len(units), ranges, scheme)
    decoded = {(units[f][0], units[e - 1][1], label) for f, e, label in decode_tags(tags, scheme)}
    assert decoded == set(gold)
    assert text[3:14] == "paracetamol"


def test_units_covering_widens_to_whole_units_and_skips_gaps():
    units = [(0, 4), (5, 9), (10, 12)]
    assert UnitLocator(units).covering(6, 7) == (1, 2)
    assert UnitLocator(units).covering(2, 6) == (0, 2)
    assert UnitLocator(units).covering(4, 5) is None  # only the space between two words
    assert UnitLocator(units).covering(12, 14) is None


def test_resolve_overlaps_keeps_the_longest():
    kept, dropped = resolve_overlaps([(0, 2, "X"), (1, 5, "Y"), (5, 6, "X"), (1, 2, "Z")])
    assert kept == [(1, 5, "Y"), (5, 6, "X")]
    assert sorted(dropped) == [(0, 2, "X"), (1, 2, "Z")]


def test_entity_extent_merges_whitespace_gaps_and_rejects_discontinuous():
    text = "lobe  supérieur et inférieur"
    joined = Entity(label="a", spans=[Span(0, 4), Span(6, 15)], text="lobe supérieur")
    assert entity_extent(joined, text) == (0, 15)
    split = Entity(label="a", spans=[Span(0, 4), Span(19, 28)], text="lobe inférieur")
    with pytest.raises(ValueError, match="discontinuous.*split it into one entity per span or drop it"):
        entity_extent(split, text, "doc-1")


# ---------------------------------------------------------------------- windows
def _words(n: int, seed: int) -> list[bool]:
    rng = random.Random(seed)
    return [i == 0 or rng.random() < 0.6 for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_windows_cover_everything_with_the_overlap(seed):
    n, capacity, stride = 97, 14, 4
    starts = _words(n, seed)
    windows = plan_windows(starts, capacity, stride)
    assert windows[0][0] == 0 and windows[-1][1] == n
    for (s1, e1), (s2, _) in itertools.pairwise(windows):
        assert 0 < e1 - s1 <= capacity and s1 < s2
        assert e1 - s2 >= stride  # overlap of at least `stride` tokens, no gap
    # every token range of at most `stride` tokens is whole in some window
    for start in range(n):
        for end in range(start + 1, min(start + stride, n) + 1):
            assert any(s <= start and end <= e for s, e in windows)


def test_windows_end_on_word_starts_when_possible():
    starts = [True, False, False] * 20  # words of 3 tokens
    windows = plan_windows(starts, capacity=10, stride=3)
    for s, e in windows:
        assert starts[s]
        assert e == 60 or starts[e]


def test_short_text_is_one_window_and_bad_stride_is_rejected():
    assert plan_windows([True] * 5, 10, 2) == [(0, 5)]
    with pytest.raises(ValueError, match="stride"):
        plan_windows([True] * 50, 10, 10)


def test_central_window_per_token():
    windows = [(0, 10), (6, 16), (12, 20)]
    owner = central_window_per_token(windows, 20)
    assert owner[0] == 0 and owner[19] == 2
    assert owner[7] == 0 and owner[9] == 1  # 7 is farther from window 0's end than from 1's start
    assert owner[13] == 1 and owner[15] == 2


def test_tokenized_text_units():
    tokens = TokenizedText(
        text="para cetamol",
        input_ids=[1, 2, 3, 4],
        offsets=[(0, 2), (2, 4), (5, 8), (8, 12)],
        word_ids=[0, 0, 1, 1],
    )
    words = tokens.units(tag_subtokens=False)
    assert [(u.start, u.end, u.first_token, u.end_token) for u in words] == [(0, 4, 0, 2), (5, 12, 2, 4)]
    assert len(tokens.units(tag_subtokens=True)) == 4


def test_window_tags_mask_cut_entities_that_are_whole_elsewhere_and_clip_the_others():
    bounds = [(0, 10), (6, 16)]
    ranges = [(2, 4, "A"), (8, 11, "B"), (0, 16, "C")]
    assert window_tags(ranges[:2], bounds) == [[(2, 4, "A"), (8, 10, None)], [(2, 5, "B")]]
    # longer than any window: labelled as far as it goes in each window
    assert window_tags(ranges[2:], bounds) == [[(0, 10, "C")], [(0, 10, "C")]]


def _window_tags_by_scanning(ranges, bounds, index):
    """What `window_tags` must give for window ``index``, by looking at every entity and window."""
    lo, hi = bounds[index]
    result = []
    for first, end, label in ranges:
        if end <= lo or first >= hi:
            continue
        if lo <= first and end <= hi:
            result.append((first - lo, end - lo, label))
            continue
        whole_elsewhere = any(b_lo <= first and end <= b_hi for b_lo, b_hi in bounds)
        result.append((max(first, lo) - lo, min(end, hi) - lo, None if whole_elsewhere else label))
    return result


def test_window_tags_equal_a_scan_of_every_entity_and_window_on_random_texts():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randrange(1, 80)
        word_starts = [i == 0 or rng.random() < 0.6 for i in range(n)]
        capacity = rng.randrange(2, 20)
        windows = plan_windows(word_starts, capacity, rng.randrange(0, capacity))
        units = [Unit(i, i + 1, i, i + 1) for i in range(n) if word_starts[i]]
        candidates = []
        for _ in range(rng.randrange(0, 12)):
            first = rng.randrange(0, len(units))
            candidates.append((first, min(len(units), first + rng.randrange(1, 8)), rng.choice("AB")))
        ranges, _ = resolve_overlaps(candidates)
        bounds = window_units(units, windows)
        assert window_tags(ranges, bounds) == [_window_tags_by_scanning(ranges, bounds, i) for i in range(len(bounds))]


def test_resolve_overlaps_equals_checking_every_kept_range_on_random_ranges():
    rng = random.Random(1)
    for _ in range(300):
        ranges = []
        for _ in range(rng.randrange(0, 25)):
            first = rng.randrange(0, 40)
            ranges.append((first, first + rng.randrange(1, 9), rng.choice("ABC")))
        order = sorted(ranges, key=lambda r: (-(r[1] - r[0]), r[0], r[2]))
        taken, dropped = [], []
        for candidate in order:
            overlaps = any(candidate[0] < other[1] and other[0] < candidate[1] for other in taken)
            (dropped if overlaps else taken).append(candidate)
        assert resolve_overlaps(ranges) == (sorted(taken), dropped)


def test_window_units_uses_first_tokens():
    tokens = TokenizedText("x", [0] * 6, [(i, i + 1) for i in range(6)], [0, 0, 1, 2, 2, 3])
    units = tokens.units(tag_subtokens=False)  # first tokens 0, 2, 3, 5
    assert window_units(units, [(1, 4), (3, 6)]) == [(1, 3), (2, 4)]
