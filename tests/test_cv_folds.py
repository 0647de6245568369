"""Fold assignment (`medkit_exp.cv`): deterministic, disjoint, covering, groups unsplit, labels
balanced with stratification; each document's group from its metadata, an attribute or its id."""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict
from types import SimpleNamespace

import pytest

from medkit_exp.core import Entity, Span, TextDocument
from medkit_exp.cv import assign_folds, group_values, split_for_fold, strata_of, stratum
from medkit_exp.errors import UserError

LABELS = ["problem", "test", "treatment", "none"]


def random_corpus(case: int) -> dict:
    """Items, folds, a seed, and (in most cases) groups of 1-4 items and strata of skewed frequencies."""
    rng = random.Random(case)
    folds = rng.randint(2, 6)
    patients = rng.randint(folds, 60)
    groups = [f"p{p:03d}" for p in range(patients) for _ in range(rng.randint(1, 4))]
    rng.shuffle(groups)
    weights = [rng.random() + 0.1 for _ in LABELS]
    return {"items": list(range(len(groups))), "folds": folds, "seed": rng.randrange(1000),
            "groups": groups if case % 3 else None,
            "strata": rng.choices(LABELS, weights=weights, k=len(groups)) if case % 2 else None}


def worst_deviation(assigned: list[int], strata: list[str], folds: int) -> float:
    """The largest gap between a stratum's share of one fold and its share of all items."""
    overall, worst = Counter(strata), 0.0
    for fold in range(folds):
        inside = Counter(s for s, k in zip(strata, assigned, strict=True) if k == fold)
        size = sum(inside.values())
        worst = max(worst, *(abs(inside[s] / size - overall[s] / len(strata)) for s in overall))
    return worst


@pytest.mark.parametrize("case", range(120))
def test_folds_are_deterministic_disjoint_covering_and_keep_groups_whole(case):
    corpus = random_corpus(case)
    items, folds, groups, strata = corpus["items"], corpus["folds"], corpus["groups"], corpus["strata"]
    assigned = assign_folds(items, folds, corpus["seed"], groups=groups, strata=strata)
    # every item in exactly one fold, every fold used
    assert len(assigned) == len(items) and set(assigned) == set(range(folds))
    # the same seed gives the same folds (in another call, as each job of a sweep draws them)
    assert assign_folds(items, folds, corpus["seed"], groups=groups, strata=strata) == assigned
    if groups is not None:
        fold_of_group = defaultdict(set)
        for group, fold in zip(groups, assigned, strict=True):
            fold_of_group[group].add(fold)
        assert all(len(f) == 1 for f in fold_of_group.values()), "a group was split across folds"
    elif strata is None:  # KFold: sizes within one
        sizes = Counter(assigned).values()
        assert max(sizes) - min(sizes) <= 1
    if strata is not None and groups is None:
        # StratifiedKFold: each stratum's count per fold within one of every other fold's, so each
        # fold's share of a stratum is within (1 + share) / fold size of its share overall.
        overall = Counter(strata)
        for fold in range(folds):
            inside = Counter(s for s, k in zip(strata, assigned, strict=True) if k == fold)
            size = sum(inside.values())
            for label, total in overall.items():
                share = total / len(strata)
                assert abs(inside[label] / size - share) <= (1 + share) / size + 1e-12


def test_another_seed_draws_other_folds():
    items = list(range(60))
    groups = [f"p{i // 2}" for i in items]  # 30 patients of 2 notes: many ties for the seed to order
    assert assign_folds(items, 5, 0) != assign_folds(items, 5, 1)
    assert assign_folds(items, 5, 0, groups=groups) != assign_folds(items, 5, 1, groups=groups)


def test_grouped_folds_balance_their_sizes():
    """GroupKFold puts the largest groups first: folds of documents, not of patients, come out even."""
    rng = random.Random(7)
    groups = [f"p{p}" for p in range(40) for _ in range(rng.randint(1, 6))]
    sizes = Counter(assign_folds(groups, 5, 3, groups=groups)).values()
    assert max(sizes) - min(sizes) <= 1


def test_stratification_balances_labels_as_far_as_groups_allow():
    """The stated tolerance (docs/cross-validation.md): with patients of 1-3 notes, each fold's share
    of each stratum stays within 0.15 of its share overall, and on average the worst gap is under
    half of what grouping without stratification gives."""
    stratified, unstratified = [], []
    for case in range(150):
        rng = random.Random(1000 + case)
        folds = rng.randint(2, 5)
        groups = [f"p{p}" for p in range(rng.randint(30, 80)) for _ in range(rng.randint(1, 3))]
        strata = rng.choices(LABELS, weights=[rng.random() + 0.2 for _ in LABELS], k=len(groups))
        with_strata = assign_folds(groups, folds, case, groups=groups, strata=strata)
        stratified.append(worst_deviation(with_strata, strata, folds))
        unstratified.append(worst_deviation(assign_folds(groups, folds, case, groups=groups), strata, folds))
    assert max(stratified) <= 0.15, max(stratified)
    assert statistics.fmean(stratified) < statistics.fmean(unstratified) / 2, (
        statistics.fmean(stratified), statistics.fmean(unstratified))


def test_too_few_items_or_groups_are_refused():
    with pytest.raises(UserError, match="train \\+ dev hold 3 items, fewer than the folds"):
        assign_folds(range(3), 5, 0)
    with pytest.raises(UserError, match="hold 2 groups, fewer than the folds"):
        assign_folds(range(10), 3, 0, groups=["a", "b"] * 5)


def doc(doc_id: str, labels: list[str], metadata: dict | None = None) -> TextDocument:
    text = " ".join(f"w{i}" for i in range(len(labels) + 1))
    document = TextDocument(text=text, id=doc_id, metadata=metadata)
    for i, label in enumerate(labels):
        start = text.index(f"w{i}")
        document.anns.add(Entity(label=label, spans=[Span(start, start + 2)], text=f"w{i}"))
    return document


def test_a_documents_stratum_is_its_most_frequent_label():
    assert stratum(doc("a", ["test", "problem", "test"])) == "test"
    assert stratum(doc("b", ["treatment", "problem"])) == "problem"  # a tie: the first alphabetically
    assert stratum(doc("c", [])) == "none"
    with pytest.raises(UserError, match="item 0 is a dict, not a document with entities; set cv.stratify=false"):
        strata_of([{"x": 1}])


def test_group_values_from_metadata_attribute_key_and_regex():
    docs = [doc("p01-note1", [], {"patient_id": "p01"}), doc("p02-note1", [], {"patient_id": 2})]
    assert group_values(docs, "patient_id") == ["p01", "2"]
    assert group_values(docs, r"regex:^(p\d+)-") == ["p01", "p02"]  # the first capture group
    assert group_values(docs, r"regex:p\d+") == ["p01", "p02"]  # no group: the whole match
    assert group_values([SimpleNamespace(site="a"), SimpleNamespace(site="b")], "site") == ["a", "b"]
    assert group_values([{"id": "x1", "site": 3}, {"id": "x2", "site": 4}], "site") == ["3", "4"]
    assert group_values([{"id": "x-1"}, {"id": "y-2"}], "regex:^(\\w)-") == ["x", "y"]


def test_group_values_refuse_a_field_no_document_has_naming_those_they_have():
    docs = [doc("a", [], {"patient_id": "p1", "split": "train"}), doc("b", [], {"split": "dev"})]
    with pytest.raises(UserError) as refused:
        group_values(docs, "patient")
    assert str(refused.value) == ("cv.group_by=patient: no document has a 'patient' field (their metadata has "
                                  "patient_id, split); name one of those, or use cv.group_by='regex:<pattern>' "
                                  "over the document ids")
    with pytest.raises(UserError, match="1 of 2 documents have no 'patient_id' \\(the first: b\\)"):
        group_values(docs, "patient_id")
    with pytest.raises(UserError, match="the pattern does not match document id 'b'"):
        group_values(docs, "regex:^a$")


def test_split_for_fold_holds_each_fold_out_once():
    train = [doc(f"train-{i}", ["problem"] * (i % 3), {"patient": f"p{i // 3}"}) for i in range(30)]
    dev = [doc(f"dev-{i}", ["test"], {"patient": f"q{i // 2}"}) for i in range(10)]
    heldout_ids = []
    for fold in range(4):
        kept, heldout, info = split_for_fold(train, dev, 4, fold, seed=1, group_by="patient", stratify=True)
        assert {d.id for d in kept} | {d.id for d in heldout} == {d.id for d in train + dev}
        assert not {d.id for d in kept} & {d.id for d in heldout}
        assert not {d.metadata["patient"] for d in kept} & {d.metadata["patient"] for d in heldout}
        assert (info.train, info.heldout, info.groups) == (len(kept), len(heldout), 15)
        heldout_ids += [d.id for d in heldout]
    assert sorted(heldout_ids) == sorted(d.id for d in train + dev)  # every document held out exactly once
    assert info.describe(test=12) == (f"cv: fold 3 of 4 (seed 1, grouped by patient (15 groups), stratified by "
                                      f"entity label): {info.train} train / {info.heldout} held-out documents, "
                                      "test unchanged (12 documents)")
    with pytest.raises(UserError, match="cv.fold=4 is not a fold of cv.folds=4; folds are numbered 0 to 3"):
        split_for_fold(train, dev, 4, 4)
