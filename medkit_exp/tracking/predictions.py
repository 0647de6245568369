"""Read back the per-document test predictions a run stored, for comparisons between runs.

Every run writes ``<trainer.output_dir>/predictions/test.jsonl`` and logs it as the MLflow
artifact ``predictions/test.jsonl``: one JSON object per document, ``{"document_id", "split",
"gold", "predicted"}``, where ``gold`` and ``predicted`` are ``[[label, start, end], ...]`` for
NER and one label each for classification, or one per item ``{"document_id", "split",
"values"}`` (a metrics computer's ``item_values``; scored as means). A *side* of a comparison is what such predictions
are read from:

- an MLflow run id (the artifact is downloaded);
- a run's folder: the Hydra run folder, its ``checkpoints/`` (``trainer.output_dir``), the
  ``predictions/`` folder or the ``.jsonl`` file itself;
- a configuration of a sweep: every seed of it, found in the parent run's ``sweep_summary.json``
  by its rank there (``<parent run id>:<rank>``, 1 the best) or by its overrides.

Per-document counts are `medkit_exp.stats.DocumentCounts`: scoring and tests are theirs.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkit_exp.errors import UserError
from medkit_exp.stats import DocumentCounts, classification_counts, item_value_counts, ner_counts

ARTIFACT_DIR = "predictions"
SUMMARY_ARTIFACT = "sweep_summary.json"  # written on a sweep's parent run by medkit_exp.sweeps.callback
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
RUN_ID = re.compile(r"[0-9a-f]{32}")
MISSING_TAG = "predictions.missing"  # set by the app on a run that stored none: why
HOW_TO_GET = ("runs store per-document predictions when their component's score_test takes predictions_path (the "
              "built-in components' does) or their metrics computer has item_values (docs/evaluation.md); a run of "
              "an older version has none: train it again with this version to compare it")


class MissingPredictionsError(UserError):
    """A run or folder holds no stored predictions of the split (an older or unfinished run)."""


@dataclass(frozen=True)
class Predictions:
    """The records of one run on one split, and where they were read from (``run <id>``, a path)."""

    source: str
    records: tuple[dict[str, Any], ...]

    def counts(self) -> DocumentCounts:
        """Per-document counts (NER when ``gold`` is a list of entities, per-item means when the
        records hold ``values``, else classification)."""
        try:
            if "values" in self.records[0]:
                return item_value_counts(self.records)
            if all(isinstance(r.get("gold"), list) for r in self.records):
                return ner_counts(self.records)
            return classification_counts(self.records)
        except ValueError as exc:
            raise UserError(f"{self.source}: {exc}") from exc


@dataclass(frozen=True)
class Side:
    """One side of a comparison: one run, or every seed of one configuration.

    Attributes:
        label: how the side is printed (``run 3f2a...``, a folder, ``sweep <id> rank 1 (...)``).
        slug: the side in a file name (``comparisons/<A>_vs_<B>.json``).
        runs: the predictions of each run (one per seed).
    """

    label: str
    slug: str
    runs: tuple[Predictions, ...]

    def counts(self) -> list[DocumentCounts]:
        return [run.counts() for run in self.runs]


def read_records(path: Path, source: str | None = None) -> tuple[dict[str, Any], ...]:
    """The JSON objects of a predictions file, one per line (blank lines skipped)."""
    source = source or str(path)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source}: line {number} is not JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise UserError(f"{source}: line {number} is not a JSON object")
        records.append(record)
    if not records:
        raise MissingPredictionsError(f"{source} holds no prediction")
    return tuple(records)


def predictions_file(folder: Path, split: str = "test") -> Path | None:
    """The predictions file of ``split`` in a run's folder (see the module's docstring), if any."""
    name = f"{split}.jsonl"
    if folder.is_file():
        return folder
    for candidate in (folder / name, folder / ARTIFACT_DIR / name, folder / "checkpoints" / ARTIFACT_DIR / name):
        if candidate.is_file():
            return candidate
    return None


def folder_predictions(folder: Path, split: str = "test") -> Predictions:
    """The predictions stored in a run's folder; `MissingPredictionsError` when it holds none."""
    path = predictions_file(folder, split)
    if path is None:
        raise MissingPredictionsError(f"{folder} holds no {ARTIFACT_DIR}/{split}.jsonl (looked in it, its "
                                      f"{ARTIFACT_DIR}/ and checkpoints/{ARTIFACT_DIR}/): {HOW_TO_GET}")
    return Predictions(str(path), read_records(path))


@contextmanager
def quiet_downloads() -> Iterator[None]:
    """MLflow's download progress bars off (on stderr, they would break a command's one-line output)."""
    previous = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = previous


def get_run(client: Any, run_id: str) -> Any:
    """The MLflow run ``run_id``; `UserError` when the store has none of that id."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise UserError(f"no MLflow run {run_id} in {_store(client)}") from None


def run_predictions(client: Any, run_id: str, split: str = "test") -> Predictions:
    """The predictions logged by run ``run_id`` (artifact ``predictions/<split>.jsonl``).

    `UserError` for an unknown run, `MissingPredictionsError` for a run that logged none (with
    the reason the run recorded in its ``predictions.missing`` tag, when it did).
    """
    run = get_run(client, run_id)
    artifact = f"{ARTIFACT_DIR}/{split}.jsonl"
    if artifact not in {a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR)}:
        reason = run.data.tags.get(MISSING_TAG)
        raise MissingPredictionsError(f"run {run_id} has no {artifact} artifact: "
                                      + (f"it stored no per-document predictions because {reason}" if reason
                                         else HOW_TO_GET))
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        local = Path(client.download_artifacts(run_id, artifact, tmp))
        return Predictions(f"run {run_id}", read_records(local, f"run {run_id}'s {artifact}"))


def sweep_configurations(client: Any, parent_run_id: str) -> list[dict[str, Any]]:
    """The configurations of a sweep as its parent run ranked them (best first): each
    ``{"overrides", "run_ids", "mean", ...}`` of ``sweep_summary.json``."""
    run = get_run(client, parent_run_id)
    if "sweep.id" not in run.data.tags:
        raise UserError(f"run {parent_run_id} is not a sweep's parent run (it has no sweep.id tag)")
    if SUMMARY_ARTIFACT not in {a.path for a in client.list_artifacts(parent_run_id)}:
        raise UserError(f"sweep {parent_run_id} has no {SUMMARY_ARTIFACT}: its configurations were never ranked "
                        "(no job logged its objective, or the sweep did not end)")
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        summary = json.loads(Path(client.download_artifacts(parent_run_id, SUMMARY_ARTIFACT, tmp))
                             .read_text(encoding="utf-8"))
    return list(summary["configurations"])


def find_configuration(configurations: Sequence[dict[str, Any]], parent_run_id: str,
                       rank: int | None = None, overrides: str | None = None) -> tuple[int, dict[str, Any]]:
    """``(rank, configuration)`` of a sweep's ranked configurations, by its rank (from 1) or by
    overrides: the configuration with exactly these overrides, else the one holding them all."""
    if rank is not None:
        if not 1 <= rank <= len(configurations):
            raise UserError(f"sweep {parent_run_id} ranked {len(configurations)} configurations: give a rank "
                            f"from 1 to {len(configurations)}, not {rank}")
        return rank, configurations[rank - 1]
    wanted = override_words(overrides or "")
    exact = [k for k, c in enumerate(configurations) if override_words(c["overrides"]) == wanted]
    matches = exact or [k for k, c in enumerate(configurations)
                        if set(wanted) <= set(override_words(c["overrides"]))]
    if len(matches) != 1:
        listed = "; ".join(f"{k + 1}: {c['overrides']}" for k, c in enumerate(configurations))
        which = "several" if matches else "none"
        raise UserError(f"--config {overrides!r} matches {which} of sweep {parent_run_id}'s configurations "
                        f"(rank: overrides) {listed}")
    return matches[0] + 1, configurations[matches[0]]


def override_words(overrides: str) -> list[str]:
    """The overrides of a string, without the backslashes Hydra escapes some characters with
    (it records ``component.model=models:/name/1`` as ``component.model=models\\:/name/1``)."""
    return [re.sub(r"\\(.)", r"\1", word) for word in overrides.split()]


def sweep_side(client: Any, parent_run_id: str, rank: int | None = None, overrides: str | None = None,
               split: str = "test") -> Side:
    """Every seed of one configuration of a sweep (see `find_configuration`) as one side."""
    configurations = sweep_configurations(client, parent_run_id)
    rank, configuration = find_configuration(configurations, parent_run_id, rank, overrides)
    runs = tuple(run_predictions(client, run_id, split) for run_id in configuration["run_ids"])
    label = f"sweep {parent_run_id} rank {rank} ({configuration['overrides']})"
    return Side(label, f"{parent_run_id[:8]}-rank{rank}", runs)


def resolve_side(spec: str, client: Callable[[], Any], split: str = "test") -> Side:
    """A side given on the command line: an existing path (a run's folder or predictions file),
    ``<parent run id>:<rank>`` (a sweep configuration), else an MLflow run id. ``client()`` gives
    the MLflow client, called only for a run or a sweep (a folder needs no store)."""
    path = Path(spec)
    if path.exists():
        predictions = folder_predictions(path, split)
        return Side(str(path), folder_slug(path), (predictions,))
    found = re.fullmatch(r"(\w+):(\d+)", spec)
    if found:
        return sweep_side(client(), found.group(1), rank=int(found.group(2)), split=split)
    if not RUN_ID.fullmatch(spec):
        raise UserError(f"{spec!r} is neither a folder nor an MLflow run id (32 hex digits) nor "
                        "<sweep parent run id>:<rank>")
    return Side(f"run {spec}", spec, (run_predictions(client(), spec, split),))


def slug(text: str) -> str:
    """``text`` reduced to letters, digits, ``.`` and ``-`` (at most 60 characters), for a file name
    or an MLflow tag key."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:60] or "side"


def folder_slug(path: Path) -> str:
    """A run's folder in a file name: its last two parts above ``checkpoints/`` and ``predictions/``
    (``outputs/2026-12-03/10-00-00/checkpoints`` -> ``2026-12-03-10-00-00``)."""
    parts = list(path.resolve().parts)
    while parts and (parts[-1] in ("checkpoints", ARTIFACT_DIR) or parts[-1].endswith(".jsonl")):
        parts.pop()
    return slug("-".join(parts[-2:]))


def _store(client: Any) -> str:
    from medkit_exp.tracking.secrets import redact_text

    return redact_text(str(client.tracking_uri))
