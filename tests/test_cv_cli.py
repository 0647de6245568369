"""Cross-validation through `python -m medkit_exp`: bad ``cv`` settings refused in one line before
any model loads, one job per fold whose dev split is its held-out fold, groups kept whole."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from conftest import EXAMPLE_REGRESSOR_ARGS, copy_examples
from test_cli import client_for, quick_args, run_cli

from medkit_exp.core import Entity, TextDocument
from medkit_exp.io import load_demo_corpus, write_jsonl


@pytest.mark.parametrize("overrides, expected", [
    (["cv.folds=1", "cv.fold=0"], "cv.folds=1 must be 2 or more"),
    (["cv.folds=5"], "cv.folds=5 needs cv.fold, the fold this job holds out: run every fold with "
                     "-m cv.folds=5 'cv.fold=range(5)'"),
    (["cv.fold=2"], "cv.fold=2 needs cv.folds, the number of folds"),
    (["cv.folds=3", "cv.fold=3"], "cv.fold=3 is not a fold of cv.folds=3; folds are numbered 0 to 2"),
    (["cv.folds=3", "cv.fold=-1"], "cv.fold=-1 is not a fold of cv.folds=3"),
    (["cv.folds=3", "cv.fold=0", "evaluation.dev_predictions=false"],
     "evaluation.dev_predictions=false: a cross-validation job's dev predictions are its out-of-fold predictions"),
    (["cv.folds=3", "cv.fold=0", "cv.group_by='regex:('"], "cv.group_by=regex:(: not a valid regular expression"),
    # Known once the data is read, still before the component (and its model) is built:
    (["cv.folds=2", "cv.fold=0", "cv.group_by=patient_id"],
     "cv.group_by=patient_id: no document has a 'patient_id' field (their metadata has split)"),
    (["cv.folds=3", "cv.fold=0", r"cv.group_by='regex:^demo-(\w+)-'"],
     "cv.folds=3: train + dev hold 2 groups, fewer than the folds (a group stays in one fold)"),
])
def test_bad_cv_settings_fail_in_one_line_before_any_model_loads(tmp_path, overrides, expected):
    # A model that does not exist: had it been loaded first, its error would show instead.
    result = run_cli([*overrides, "component.model=/no/such/model"], tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medkit_exp: error:") and expected in lines[0], lines
    assert not (tmp_path / "mlruns").exists() and not list(tmp_path.rglob("checkpoints"))


def dev_records(client, run_id: str, folder: Path, split: str = "dev") -> list[dict]:
    """The run's ``predictions/<split>.jsonl`` artifact, read back from MLflow."""
    path = Path(client.download_artifacts(run_id, f"predictions/{split}.jsonl", str(folder)))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_two_folds_on_the_demo_corpus_hold_out_train_and_dev_once_and_share_the_test_split(workdir, tiny_bert_dir):
    result = run_cli(["-m", *quick_args(tiny_bert_dir), "trainer.epochs=1", "data.max_docs=12", "cv.folds=2",
                      "cv.fold=range(2)"], workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    described = re.findall(r"^cv: fold (\d) of 2 \(seed 0\): (\d+) train / (\d+) held-out documents, "
                           r"test unchanged \(12 documents\)$", result.stdout, flags=re.M)
    assert [fold for fold, _, _ in described] == ["0", "1"]
    assert all(int(train) + int(heldout) == 24 for _, train, heldout in described)

    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    children = sorted((r for r in runs if "cv.fold" in r.data.tags), key=lambda r: r.data.tags["cv.fold"])
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    for fold, run in enumerate(children):
        tags = run.data.tags
        assert (tags["cv.folds"], tags["cv.fold"], tags["cv.seed"], tags["cv.group_by"]) == ("2", str(fold), "0",
                                                                                              "(none)")
        assert run.data.params["cv.fold"] == str(fold) and run.data.params["cv.folds"] == "2"
        configuration = tags["sweep.configuration"].split()
        assert "cv.folds=2" in configuration and not [o for o in configuration if o.startswith("cv.fold=")]
    assert children[0].data.tags["sweep.configuration"] == children[1].data.tags["sweep.configuration"]

    demo = load_demo_corpus()
    pooled = {d.id for d in demo["train"][:12] + demo["dev"][:12]}
    heldout = [dev_records(client, run.info.run_id, workdir / f"dl{fold}") for fold, run in enumerate(children)]
    ids = [{r["document_id"] for r in records} for records in heldout]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == pooled  # out of fold: every document once
    assert [{r["fold"] for r in records} for records in heldout] == [{0}, {1}]
    for fold, run in enumerate(children):  # the run's dev split is its held-out fold
        inputs = {i.dataset.name: i.dataset for i in run.inputs.dataset_inputs}
        assert json.loads(inputs["demo/dev"].source)["tags"]["items"] == str(len(ids[fold]))
    tests = [{r["document_id"] for r in dev_records(client, run.info.run_id, workdir / f"t{fold}", "test")}
             for fold, run in enumerate(children)]
    assert tests[0] == tests[1] == {d.id for d in demo["test"][:12]}
    test_digests = [{i.dataset.name: i.dataset.digest for i in r.inputs.dataset_inputs}["demo/test"] for r in children]
    assert test_digests[0] == test_digests[1]


def write_grouped_corpus(folder: Path, patients: int, seed: int = 0) -> dict[str, str]:
    """A JSONL corpus (train.jsonl, dev.jsonl, test.jsonl) of demo sentences given to patients of
    1-3 notes each, ``metadata.patient_id`` on every note; returns each note's patient."""
    rng = random.Random(seed)
    sentences = iter(load_demo_corpus()["train"])
    notes, patient_of = [], {}
    for p in range(patients):
        for n in range(rng.randint(1, 3)):
            source = next(sentences)
            note = TextDocument(text=source.text, id=f"p{p:03d}-note{n}", metadata={"patient_id": f"p{p:03d}"})
            for entity in source.anns.entities:
                note.anns.add(Entity(label=entity.label, spans=list(entity.spans), text=entity.text))
            notes.append(note)
            patient_of[note.id] = f"p{p:03d}"
    rng.shuffle(notes)  # a patient's notes in both train and dev: the folds must bring them together
    cut = len(notes) * 3 // 4
    write_jsonl(notes[:cut], folder / "train.jsonl")
    write_jsonl(notes[cut:], folder / "dev.jsonl")
    write_jsonl(load_demo_corpus()["test"][:8], folder / "test.jsonl")
    return patient_of


def test_the_5fold_preset_keeps_each_patient_in_one_fold(tmp_path, tiny_bert_dir):
    patient_of = write_grouped_corpus(tmp_path / "corpus", patients=16)
    result = run_cli(["-m", "+cv=5fold", *quick_args(tiny_bert_dir), "trainer.epochs=1", "data=jsonl",
                      f"data.root={tmp_path / 'corpus'}", "data.max_docs=null", "cv.group_by=patient_id",
                      "cv.stratify=true", "tracking=none", "evaluation.resamples=0", "hydra.sweep.dir=sweep"],
                     tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(re.findall(r"^cv: fold \d of 5 \(seed 0, grouped by patient_id \(16 groups\), stratified by "
                          r"entity label\): \d+ train / \d+ held-out documents", result.stdout, flags=re.M)) == 5
    folds = {}
    for fold in range(5):
        path = tmp_path / "sweep" / str(fold) / "checkpoints" / "predictions" / "dev.jsonl"
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert {r["fold"] for r in records} == {fold}
        folds[fold] = {r["document_id"] for r in records}
    assert sorted(i for ids in folds.values() for i in ids) == sorted(patient_of)  # every note once
    patients = [{patient_of[i] for i in ids} for ids in folds.values()]
    assert sum(len(p) for p in patients) == 16  # no patient in two folds


def test_a_users_own_component_and_data_cross_validate(tmp_path):
    """examples/: the regressor's items are plain dicts; the app draws the folds all the same."""
    copy_examples(tmp_path)
    result = run_cli(["-m", *EXAMPLE_REGRESSOR_ARGS, "tracking=none", "cv.folds=2", "cv.fold=range(2)",
                      "hydra.sweep.dir=sweep"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.findall(r"^cv: fold (\d) of 2 \(seed 0\): 160 train / 160 held-out items, test unchanged "
                      r"\(64 items\)$", result.stdout, flags=re.M) == ["0", "1"]
