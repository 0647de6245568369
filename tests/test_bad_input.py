"""Bad input through the real CLI: one clear line naming the problem, exit code 2, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import quick_args, run_cli

TEXT = "Fever and cough treated with paracetamol.\n"
GOOD_ANN = "T1\tproblem 0 5\tFever\nT2\ttreatment 29 40\tparacetamol\n"


def brat_corpus(root: Path, train_ann: str = GOOD_ANN, train_text: bytes | None = None) -> Path:
    for split in ("train", "dev", "test"):
        folder = root / split
        folder.mkdir(parents=True)
        (folder / "d1.txt").write_bytes(train_text if (split == "train" and train_text) else TEXT.encode())
        (folder / "d1.ann").write_text(train_ann if split == "train" else GOOD_ANN, encoding="utf-8")
    return root


CASES = {
    "malformed BRAT line": ({"train_ann": "T1\tproblem zero 5\tFever\n"}, [], "train/d1.ann line 1"),
    "span out of range": ({"train_ann": "T1\tproblem 0 500\tFever\n"}, [], "out of range"),
    "span text mismatch": ({"train_ann": "T1\tproblem 0 5\tCough\n"}, [], "does not match"),
    "overlap under the error policy": ({"train_ann": GOOD_ANN + "T3\tproblem 0 9\tFever and\n"}, [], "overlap"),
    "label not in the label set": ({}, ["data.labels=[problem,test]"], "treatment"),
    "non-UTF-8 file": ({"train_text": TEXT.replace("Fever", "Fi\xe8vre").encode("latin-1")}, [], "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_corpus_is_one_line_with_the_file(tmp_path, tiny_bert_dir, case):
    corpus_kwargs, overrides, expected = CASES[case]
    root = brat_corpus(tmp_path / "corpus", **corpus_kwargs)
    result = run_cli(["data=brat", f"data.root={root}", "tracking=none", *quick_args(tiny_bert_dir), *overrides],
                     tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medkit_exp: error:"), result.stderr[-2000:]
    assert expected in lines[0]
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("checkpoint_*"))


def test_empty_corpus_and_missing_root(tmp_path, tiny_bert_dir):
    (tmp_path / "empty").mkdir()
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        (tmp_path / "empty" / name).write_text("", encoding="utf-8")
    for args, expected in [
        (["data=jsonl", f"data.root={tmp_path / 'empty'}"], "empty"),
        (["data=brat"], "data=brat needs a data folder"),  # a required value left unset
    ]:
        result = run_cli([*args, "tracking=none", *quick_args(tiny_bert_dir)], tmp_path, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]


def test_resuming_from_a_checkpoint_of_another_label_set_is_refused(workdir, tiny_bert_dir):
    first = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=1", "data.max_docs=8", "hydra.run.dir=first",
                     "tracking=none"], workdir)
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoint = workdir / "first" / "checkpoints" / "checkpoint_001"
    result = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=2", "data.max_docs=8", "data.labels=[problem]",
                      f"trainer.resume_from={checkpoint}", "tracking=none"], workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot resume from {checkpoint}" in lines[0], result.stderr[-2000:]


def test_an_out_of_range_component_setting_is_one_line(tmp_path, tiny_bert_dir):
    result = run_cli(["component.attention_dropout=1.5", "tracking=none", *quick_args(tiny_bert_dir)], tmp_path,
                     timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "attention_dropout must be in [0, 1), got 1.5" in lines[0], result.stderr[-2000:]
    assert lines[0].count("attention_dropout must be") == 1, lines[0]  # the wrapped cause is not repeated
    assert not list(tmp_path.rglob("checkpoint_*")), "nothing trained, nothing written"


@pytest.mark.parametrize("override, expected", [
    ("data.root=/no/such/folder",
     "data.root is not a setting of this configuration: the chosen data option has no 'root'"),
    ("+data.root=/no/such/folder", "data.root: medkit_exp.io.demo_corpus has no argument 'root'"),
    ("scheduler=none", None),  # a valid choice: composes
    ("scheduler.warmup_ratioo=0.2", "scheduler.warmup_ratioo is not a setting of this configuration"),
])
def test_a_setting_the_chosen_options_ignore_is_refused(tmp_path, override, expected):
    """The demo corpus has no folder: data.root with it would be silently ignored, so it is an error."""
    args = [override] + (["--cfg", "job"] if expected is None else ["tracking=none"])
    result = run_cli(args, tmp_path, timeout=120)
    if expected is None:
        assert result.returncode == 0, result.stderr[-2000:]
        return
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("checkpoint_*"))
