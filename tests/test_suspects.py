"""Annotation-error suspects (medkit_exp.analysis.suspects) and `python -m medkit_exp.suspects`:
planted errors come first with their kinds, flipped labels of a simulated corpus are recovered
far above chance, and the command reads folders, files and MLflow runs, refusing in one line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medkit_exp.analysis.suspects import COLUMNS, Suspect, find_suspects, format_top, write_suspects
from medkit_exp.errors import UserError
from medkit_exp.suspects import main
from medkit_exp.text.predictions import write_records

LABELS = ("O", "Disease", "Chemical")
WORDS_PER_SENTENCE = 10


def document(doc_id: str, classes: list[int], confidence: list[float] | None = None,
             model: list[int] | None = None, gold: list[list] | None = None, fold: int | None = 0) -> dict:
    """A NER record over words ``Word0 word1 ...`` (a sentence every ten words) whose annotation
    gives word ``j`` the class ``classes[j]`` (consecutive words of one class are one entity, unless
    ``gold`` lists the entities), and whose model gives ``model[j]`` (default: the annotation's)
    the probability ``confidence[j]`` (default 0.9), the rest shared by the other classes."""
    words = [("W" if j % WORDS_PER_SENTENCE == 0 else "w") + f"ord{j}"
             + ("." if j % WORDS_PER_SENTENCE == WORDS_PER_SENTENCE - 1 else "") for j in range(len(classes))]
    text, tokens = "", []
    for word in words:
        tokens.append([len(text), len(text) + len(word)])
        text += word + " "
    model = list(classes) if model is None else model
    confidence = [0.9] * len(classes) if confidence is None else confidence
    probs = []
    for j in range(len(classes)):
        row = [(1 - confidence[j]) / (len(LABELS) - 1)] * len(LABELS)
        row[model[j]] = confidence[j]
        probs.append([round(p, 4) for p in row])
    if gold is None:
        gold = []
        for j, label in enumerate(classes):
            if label and (j == 0 or classes[j - 1] != label):
                end = j
                while end + 1 < len(classes) and classes[end + 1] == label:
                    end += 1
                gold.append([LABELS[label], tokens[j][0], tokens[end][1]])
    record = {"document_id": doc_id, "split": "dev", "gold": gold, "predicted": [], "text": text,
              "tokens": tokens, "token_labels": list(LABELS), "token_probs": probs}
    if fold is not None:
        record["fold"] = fold
    return record


def planted_corpus() -> list[dict]:
    """Twelve documents the model agrees with, but for three planted annotation errors and one
    word it mildly doubts."""
    records = []
    for k in range(12):
        classes = [0] * 20
        classes[2], classes[11:13] = 1, [2, 2]
        records.append(document(f"doc{k}", classes, fold=k % 3))
    # doc2: "word4" annotated Chemical, the model is sure it is a Disease.
    swap = [0] * 20
    swap[4] = 2
    model = list(swap)
    model[4] = 1
    records[2] = document("doc2", swap, confidence=[0.9] * 4 + [0.98] + [0.9] * 15, model=model, fold=2)
    # doc5: "word7 word8" left unannotated, the model sees a Disease there.
    missed = [0] * 20
    model = list(missed)
    model[7:9] = [1, 1]
    records[5] = document("doc5", missed, confidence=[0.9] * 7 + [0.95, 0.94] + [0.9] * 11, model=model, fold=2)
    # doc8: "word3" annotated Disease, the model sees nothing there.
    rejected = [0] * 20
    rejected[3] = 1
    model = list(rejected)
    model[3] = 0
    records[8] = document("doc8", rejected, confidence=[0.9] * 3 + [0.96] + [0.9] * 16, model=model, fold=2)
    # doc9: the model prefers Disease over the annotation's O on "word15", without much conviction.
    doubt = [0] * 20
    model = list(doubt)
    model[15] = 1
    records[9] = document("doc9", doubt, confidence=[0.9] * 15 + [0.55] + [0.9] * 4, model=model, fold=0)
    return records


def test_planted_errors_come_first_with_their_kinds():
    suspects = find_suspects(planted_corpus())
    top = [(s.document_id, s.kind, s.text, s.gold_label, s.predicted_label, s.fold) for s in suspects[:3]]
    assert top == [("doc2", "label_swap", "word4", "Chemical", "Disease", 2),
                   ("doc8", "rejected_gold", "word3", "Disease", "O", 2),
                   ("doc5", "missed_annotation", "word7 word8", "O", "Disease", 2)]
    assert [round(s.score, 4) for s in suspects[:3]] == [0.99, 0.98, 0.9750]  # 1 - p(gold) of the worst word
    assert len(suspects) == 4 and suspects[3].document_id == "doc9" and suspects[3].score < 0.8
    assert [s.score for s in suspects] == sorted((s.score for s in suspects), reverse=True)
    doc2 = planted_corpus()[2]
    assert suspects[0].start == doc2["tokens"][4][0] and suspects[0].end == doc2["tokens"][4][1]
    assert suspects[0].context == "Word0 word1 word2 word3 word4 word5 word6 word7 word8 word9."
    assert doc2["text"][suspects[0].context_start:].startswith(suspects[0].context)


def test_records_of_one_document_are_averaged_and_records_without_probabilities_skipped():
    sure = planted_corpus()
    doubting = [dict(r) for r in sure]
    doubting[2] = document("doc2", [0] * 4 + [2] + [0] * 15, fold=2)  # this seed agrees with the annotation
    old = {"document_id": "doc99", "split": "dev", "gold": [["Disease", 0, 4]], "predicted": []}
    suspects = find_suspects([*sure, *doubting, old])
    swap = next(s for s in suspects if s.document_id == "doc2")
    assert swap.kind == "label_swap" and swap.score == pytest.approx(1 - (0.01 + 0.9) / 2, abs=1e-3)
    assert [s.document_id for s in suspects[:2]] == ["doc8", "doc5"]
    assert "doc99" not in {s.document_id for s in suspects}


def test_adjacent_gold_entities_stay_apart_and_an_unknown_gold_label_is_suspect():
    record = document("d", [1, 1, 0, 0], gold=[["Disease", 0, 5], ["Disease", 6, 11]], model=[0, 0, 0, 0],
                      confidence=[0.97, 0.97, 0.9, 0.9])
    rejected = [s for s in find_suspects([record]) if s.kind == "rejected_gold"]
    assert [(s.start, s.end, s.text) for s in rejected] == [(0, 5, "Word0"), (6, 11, "word1")]
    unknown = document("u", [0, 0, 0], gold=[["Procedure", 6, 11]])
    found = find_suspects([unknown])
    assert [(s.kind, s.gold_label, s.predicted_label, s.text) for s in found] == [
        ("rejected_gold", "Procedure", "O", "word1")]


def test_records_without_probabilities_are_refused():
    with pytest.raises(UserError, match="none of the 2 records has token_probs"):
        find_suspects([{"document_id": "a", "gold": [], "predicted": []}] * 2)
    broken = document("b", [0, 0])
    broken["token_probs"] = broken["token_probs"][:1]
    with pytest.raises(UserError, match="malformed token_probs"):
        find_suspects([broken])


def test_written_table_and_page(tmp_path):
    records = planted_corpus()
    records[2]["text"] = records[2]["text"].replace("word6", "<b>&x")  # as long: the offsets stay
    suspects = find_suspects(records)
    table, page = write_suspects(suspects, tmp_path / "analysis")
    assert (table.name, page.name) == ("annotation_suspects.tsv", "annotation_suspects.html")
    with table.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(suspects) + 1
    first = dict(zip(COLUMNS, rows[1], strict=True))
    assert first == {"rank": "1", "score": f"{suspects[0].score:.4f}", "kind": "label_swap", "document_id": "doc2",
                     "fold": "2", "start": str(suspects[0].start), "end": str(suspects[0].end), "text": "word4",
                     "gold_label": "Chemical", "predicted_label": "Disease", "context": suspects[0].context}
    html = page.read_text(encoding="utf-8")
    assert "&lt;b&gt;&amp;x" in html and "<b>&x" not in html  # the text is escaped
    assert "<span class='suspect'><mark class=\"gold\" title=\"Chemical\">word4</mark></span>" in html
    assert html.index("doc2") < html.index("doc8") < html.index("doc5")
    empty_table, empty_page = write_suspects([], tmp_path / "none")
    assert empty_table.read_text(encoding="utf-8").splitlines() == ["\t".join(COLUMNS)]
    assert "No suspect" in empty_page.read_text(encoding="utf-8")


def test_format_top():
    suspects = find_suspects(planted_corpus())
    lines = format_top(suspects, 2).splitlines()
    assert lines[0] == f"{len(suspects)} annotation suspects, most likely annotation errors first; the top 2:"
    assert lines[1] == (f"   1. 0.990 label_swap        doc2 [{suspects[0].start}, {suspects[0].end}) \"word4\": "
                        "gold Chemical, model Disease, fold 2")
    assert len(lines) == 3 and format_top([], 10).startswith("No annotation suspect")
    assert isinstance(suspects[0], Suspect) and suspects[0] == Suspect(**{
        name: getattr(suspects[0], name) for name in ("document_id", "kind", "start", "end", "gold_label",
                                                       "predicted_label", "score", "text", "context", "fold")})


# ---------------------------------------------------------------------------- simulation
def simulated_corpus(seed: int, documents: int = 150, flips: int = 30) -> tuple[list[dict], list[tuple]]:
    """Documents whose true entities a noisy model mostly finds, and whose annotation has
    ``flips`` errors planted (a third each: label swapped, entity deleted, entity added on O
    words). Returns the records and each error as ``(document_id, start, end, kind)``, the kind
    the suspect should have (an entity added on O words is a gold entity the model rejects)."""
    rng = np.random.default_rng(seed)
    truth = []
    for _ in range(documents):
        classes = [0] * 30
        for start in rng.choice(np.arange(0, 28, 4), size=3, replace=False):
            length = int(rng.integers(1, 3))
            classes[start:start + length] = [int(rng.integers(1, 3))] * length
        truth.append(classes)
    annotated = [list(c) for c in truth]
    entities = [(d, j) for d, c in enumerate(truth) for j in range(30) if c[j] and (j == 0 or c[j - 1] != c[j])]
    outside = [(d, j) for d, c in enumerate(truth) for j in range(1, 29) if c[j - 1] == c[j] == c[j + 1] == 0]
    planted = []
    chosen = rng.permutation(len(entities))[: 2 * (flips // 3)]
    for n, index in enumerate(chosen):
        d, j = entities[index]
        end = j + 1 if j + 1 < 30 and truth[d][j + 1] == truth[d][j] else j
        label = truth[d][j]
        if n % 2 == 0:
            annotated[d][j:end + 1] = [3 - label] * (end + 1 - j)
            planted.append((d, j, end, "label_swap"))
        else:
            annotated[d][j:end + 1] = [0] * (end + 1 - j)
            planted.append((d, j, end, "missed_annotation"))
    for index in rng.permutation(len(outside))[: flips - len(planted)]:
        d, j = outside[index]
        annotated[d][j] = int(rng.integers(1, 3))
        planted.append((d, j, j, "rejected_gold"))
    records = []
    for d in range(documents):
        logits = 3.0 * np.eye(3)[truth[d]] + rng.normal(0, 1.0, size=(30, 3))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        record = document(f"doc{d}", annotated[d])
        record["token_probs"] = np.round(probs, 4).tolist()
        records.append(record)
    errors = [(f"doc{d}", records[d]["tokens"][j][0], records[d]["tokens"][end][1], kind)
              for d, j, end, kind in planted]
    return records, errors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_labels_of_a_simulated_corpus_rank_first(seed):
    records, errors = simulated_corpus(seed)
    suspects = find_suspects(records)
    k = len(errors)
    top = suspects[:k]

    def hits(suspect: Suspect) -> bool:
        return any(suspect.document_id == d and suspect.start < end and start < suspect.end
                   for d, start, end, _ in errors)

    precision = sum(hits(s) for s in top) / k
    words = sum(len(r["tokens"]) for r in records)
    chance = sum(len(r["text"][s:e].split()) for r in records for d, s, e, _ in errors
                 if r["document_id"] == d) / words
    assert chance < 0.02 and precision >= 0.8, (precision, chance)
    recovered = [e for e in errors if any(s.document_id == e[0] and s.start < e[2] and e[1] < s.end
                                          and s.kind == e[3] for s in suspects[: 2 * k])]
    assert len(recovered) >= 0.8 * k, len(recovered)


# ---------------------------------------------------------------------------- the command
def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refusal(capsys, *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    assert err.startswith("medkit_exp.suspects: error: ")
    return err


def write_out_of_fold(folder: Path, records: list[dict]) -> Path:
    return write_records(folder / "predictions" / "out_of_fold.jsonl", records)


def test_the_command_on_a_multirun_folder_and_on_a_file(capsys, tmp_path):
    sweep = tmp_path / "multirun" / "2026-12-03" / "10-00-00"
    path = write_out_of_fold(sweep, planted_corpus())
    code, out, err = run(capsys, str(sweep), "--top", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Annotation suspects of {path}:"
    assert [line.split()[2] for line in lines[2:5]] == ["label_swap", "rejected_gold", "missed_annotation"]
    assert lines[5] == f"Table: {sweep / 'analysis' / 'annotation_suspects.tsv'}"
    assert lines[6] == f"Page : {sweep / 'analysis' / 'annotation_suspects.html'}" and len(lines) == 7
    rows = (sweep / "analysis" / "annotation_suspects.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[1].split("\t")[2:4] == ["label_swap", "doc2"]

    code, out, _ = run(capsys, str(sweep / "predictions"), "--top", "0")  # the predictions/ folder
    assert code == 0 and "; the top" not in out and f"Table: {sweep / 'analysis'}" in out
    code, out, _ = run(capsys, str(path), "--output", str(tmp_path / "review"))
    assert code == 0 and (tmp_path / "review" / "annotation_suspects.html").is_file()
    assert len(out.splitlines()) == 1 + 1 + 4 + 2  # the top 10 by default: all 4


def test_the_command_on_a_cv_parent_run(capsys, tmp_path, mlflow_root, monkeypatch):
    from mlflow import MlflowClient

    from medkit_exp.tracking.store import setup_tracking

    experiment_id = setup_tracking(root=mlflow_root)
    uri = f"sqlite:///{mlflow_root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    parent = client.create_run(experiment_id).info.run_id
    client.log_artifact(parent, str(write_out_of_fold(tmp_path / "logged", planted_corpus())), "predictions")
    client.set_terminated(parent)
    other = client.create_run(experiment_id).info.run_id
    client.set_terminated(other)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    code, out, err = run(capsys, parent, "--tracking-uri", uri, "--top", "1")
    assert code == 0, err
    assert out.splitlines()[0] == f"Annotation suspects of run {parent}:"
    assert "label_swap" in out.splitlines()[2]
    table = Path("annotation_suspects") / parent / "annotation_suspects.tsv"
    assert f"Table: {table}" in out and (work / table).is_file()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert f"run {other} has no predictions/out_of_fold.jsonl artifact" in refusal(capsys, other)
    missing = "0123456789abcdef0123456789abcdef"
    assert f"no MLflow run {missing}" in refusal(capsys, missing)


def test_the_command_refuses_in_one_line(capsys, tmp_path):
    assert "neither an existing folder or file nor an MLflow run id" in refusal(capsys, str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    assert "holds no predictions/out_of_fold.jsonl" in refusal(capsys, str(tmp_path / "empty"))
    old = write_out_of_fold(tmp_path / "old", [{"document_id": "a", "split": "dev", "gold": [], "predicted": []}])
    assert "none of the 1 records has token_probs" in refusal(capsys, str(old.parent.parent))
    (tmp_path / "bad.jsonl").write_text("{not json\n", encoding="utf-8")
    assert "line 1 is not JSON" in refusal(capsys, str(tmp_path / "bad.jsonl"))
    assert "--top must be 0 or more" in refusal(capsys, str(old), "--top", "-1")
