"""`python -m medkit_exp.suspects`: rank the likely annotation errors of a corpus again from the
out-of-fold predictions a cross-validation stored, without training.

    python -m medkit_exp.suspects multirun/2026-12-03/10-00-00      # a CV multirun's folder
    python -m medkit_exp.suspects PARENT_RUN_ID                     # the CV parent run in MLflow
    python -m medkit_exp.suspects predictions.jsonl --top 30 --output review/

The source is a folder holding ``predictions/out_of_fold.jsonl`` (the multirun folder or the CV
parent's, or that ``predictions/`` folder), any ``.jsonl`` of NER records with per-word
probabilities, or the MLflow run id of a CV parent (its artifact ``predictions/out_of_fold.jsonl``
is downloaded). The suspects (`medkit_exp.analysis.suspects`) go to ``annotation_suspects.tsv`` and
``annotation_suspects.html`` under ``--output`` (default: ``<folder>/analysis/``, and
``./annotation_suspects/<run id>/`` for a run); the top ``--top`` are printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from medkit_exp.errors import UserError, run_command

OUT_OF_FOLD = "out_of_fold.jsonl"
PREDICTIONS_DIR = "predictions"
ANALYSIS_DIR = "analysis"
RUN_OUTPUT = Path("annotation_suspects")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medkit_exp.suspects", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", metavar="CV_PARENT_RUN_ID_OR_FOLDER",
                        help=f"an MLflow run id (the CV parent), a folder holding {PREDICTIONS_DIR}/{OUT_OF_FOLD}, "
                             "or a .jsonl of NER records")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="suspects printed (default: 10)")
    parser.add_argument("--output", type=Path, default=None, metavar="DIR",
                        help=f"where the TSV and HTML go (default: <folder>/{ANALYSIS_DIR}/, "
                             f"./{RUN_OUTPUT}/<run id>/ for a run)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite mlruns/mlflow.db here)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_command("medkit_exp.suspects", lambda: _main(parse_args(argv)))


def _main(args: argparse.Namespace) -> int:
    from medkit_exp.analysis.suspects import find_suspects, format_top, write_suspects

    if args.top < 0:
        raise UserError(f"--top must be 0 or more, got {args.top}")
    records, source, output = read_source(args.source, args.tracking_uri)
    suspects = find_suspects(records)
    table, page = write_suspects(suspects, args.output or output)
    print(f"Annotation suspects of {source}:")
    print(format_top(suspects, args.top))
    print(f"Table: {table}")
    print(f"Page : {page}", flush=True)
    return 0


def read_source(source: str, tracking_uri: str | None) -> tuple[tuple[dict[str, Any], ...], str, Path]:
    """``(records, where they were read from, default output folder)`` of a command-line source."""
    from medkit_exp.tracking.predictions import RUN_ID, read_records

    path = Path(source)
    if path.is_file():
        folder = path.parent.parent if path.parent.name == PREDICTIONS_DIR else path.parent
        return read_records(path), str(path), folder / ANALYSIS_DIR
    if path.is_dir():
        for candidate in (path / PREDICTIONS_DIR / OUT_OF_FOLD, path / OUT_OF_FOLD):
            if candidate.is_file():
                folder = path.parent if path.name == PREDICTIONS_DIR else path
                return read_records(candidate), str(candidate), folder / ANALYSIS_DIR
        raise UserError(f"{path} holds no {PREDICTIONS_DIR}/{OUT_OF_FOLD}: give the folder of a cross-validation "
                        "multirun (its parent writes it when the folds end), or a .jsonl of NER records")
    if not RUN_ID.fullmatch(source):
        raise UserError(f"{source!r} is neither an existing folder or file nor an MLflow run id (32 hex digits)")
    return run_records(source, tracking_uri) + (RUN_OUTPUT / source,)


def run_records(run_id: str, tracking_uri: str | None) -> tuple[tuple[dict[str, Any], ...], str]:
    """The out-of-fold records logged by run ``run_id``, and ``run <id>``."""
    from medkit_exp.compare import Store
    from medkit_exp.tracking.predictions import get_run, quiet_downloads, read_records

    client = Store(tracking_uri).client()
    get_run(client, run_id)
    artifact = f"{PREDICTIONS_DIR}/{OUT_OF_FOLD}"
    if artifact not in {a.path for a in client.list_artifacts(run_id, PREDICTIONS_DIR)}:
        raise UserError(f"run {run_id} has no {artifact} artifact: give the parent run of a cross-validation "
                        "(it logs the pooled out-of-fold predictions when the folds end)")
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        local = Path(client.download_artifacts(run_id, artifact, tmp))
        return read_records(local, f"run {run_id}'s {artifact}"), f"run {run_id}"


if __name__ == "__main__":
    sys.exit(main())
