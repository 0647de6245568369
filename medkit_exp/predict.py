"""`python -m medkit_exp.predict`: run a trained entity matcher on a corpus.

    python -m medkit_exp.predict --model outputs/.../checkpoint_003/model --input docs/ --output preds/
    python -m medkit_exp.predict --run-id 3f2a... --input ../shared/data/ncbi-disease/test --output preds/

The model is a checkpoint's ``model/`` folder, a model URI (``runs:/<run_id>/<path>``,
``models:/<name>/<version>``, ``models:/<name>@<alias>``; see docs/model-uris.md), or the best
checkpoint of an MLflow run (``--run-id``). Inputs: a BRAT folder, a ``.jsonl`` file, or plain ``.txt`` files. The
predictions are written as BRAT and/or JSONL; when the inputs carry entities, the scores
are printed and, with ``--run-id``, logged to that run as ``predict_*`` metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medkit_exp.errors import UserError, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medkit_exp.predict", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a checkpoint's model/ folder (or any HF token-classification folder), or a "
                        "model URI: runs:/<run_id>/<path>, models:/<name>/<version>, models:/<name>@<alias>")
    source.add_argument("--run-id", help="an MLflow run id: its best checkpoint is used (and scores are logged to it)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite mlruns/)")
    parser.add_argument("--input", required=True, help="BRAT folder, .jsonl file, .txt file or folder of .txt files")
    parser.add_argument("--format", choices=("auto", "brat", "jsonl", "text"), default="auto")
    parser.add_argument("--output", required=True, help="folder for the predictions")
    parser.add_argument("--output-format", choices=("brat", "jsonl", "both"), default="both")
    parser.add_argument("--label-map", default=None,
                        help='JSON map applied to the references, e.g. \'{"Modifier": "Disease"}\'')
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--split-sentences", action="store_true",
                        help="predict sentence by sentence (for models trained with component.split_sentences=true)")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def detect_format(path: Path) -> str:
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.is_dir() and any(path.glob("*.ann")):
        return "brat"
    return "text"


def read_inputs(path: Path, fmt: str, label_map: dict | None):
    from medkit_exp.core import TextDocument

    if not path.exists():
        raise UserError(f"--input {path} does not exist")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "brat":
        from medkit_exp.io.brat import load_brat

        return load_brat(path, label_map=label_map, overlap_policy="keep_longest").documents
    if fmt == "jsonl":
        from medkit_exp.io.jsonl import load_jsonl

        return load_jsonl(path, label_map=label_map, overlap_policy="keep_longest").documents
    files = [path] if path.is_file() else sorted(path.glob("*.txt"))
    if not files:
        raise UserError(f"--input {path} holds no .txt, .ann or .jsonl file")
    return [TextDocument(text=f.read_text(encoding="utf-8"), id=f.stem) for f in files]


def model_from_uri(value: str, tracking_uri: str | None, option: str) -> Path:
    """The local folder of a model URI or run id (a run's is its best checkpoint), downloaded once
    into the model cache (see `medkit_exp.model_uris`)."""
    from medkit_exp.model_uris import resolve_model_uri

    return resolve_model_uri(value, tracking_uri, option=option).local_path


def main(argv: list[str] | None = None) -> int:
    return run_command("medkit_exp.predict", lambda: _main(parse_args(argv)))


def _main(args: argparse.Namespace) -> int:
    from medkit_exp.core import TextDocument
    from medkit_exp.text.ner.evaluation import score_predictions

    label_map = json.loads(args.label_map) if args.label_map else None
    docs = read_inputs(Path(args.input), args.format, label_map)
    from medkit_exp.model_uris import names_a_model_uri

    if args.run_id:
        model = model_from_uri(args.run_id, args.tracking_uri, "--run-id")
    elif names_a_model_uri(args.model):
        model = model_from_uri(args.model, args.tracking_uri, "--model")
    else:
        model = Path(args.model)
    if not model.exists():
        raise UserError(f"--model {model} does not exist; give a checkpoint's model/ folder")

    from medkit_exp.text.ner import HFEntityMatcher

    matcher = HFEntityMatcher(model=model, device=args.device, batch_size=args.batch_size)
    if args.split_sentences:
        from medkit_exp.text.ner.evaluation import predict_by_sentence

        predictions = predict_by_sentence(matcher, docs)
    else:
        predictions = matcher.predict(docs)
    predicted_docs = [
        TextDocument(text=doc.text, id=doc.id, metadata=doc.metadata, anns=entities)
        for doc, entities in zip(docs, predictions, strict=True)
    ]
    output = Path(args.output)
    if args.output_format in ("brat", "both"):
        from medkit_exp.io.brat import write_brat

        write_brat(predicted_docs, output / "brat")
    if args.output_format in ("jsonl", "both"):
        from medkit_exp.io.jsonl import write_jsonl

        write_jsonl(predicted_docs, output / "predictions.jsonl")
    nb_entities = sum(len(p) for p in predictions)
    print(f"{nb_entities} entities predicted in {len(docs)} documents, written to {output}")

    if any(doc.anns.entities for doc in docs):
        scores = score_predictions(docs, predictions, matcher.tagging_scheme)
        print("scores: " + ", ".join(f"{k}={scores[k]:.4f}" for k in ("precision", "recall", "f1") if k in scores))
        (output / "scores.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
        if args.run_id:
            from mlflow.tracking import MlflowClient

            from medkit_exp.model_uris import tracking_uri_or_default

            client = MlflowClient(tracking_uri_or_default(args.tracking_uri))
            for key, value in scores.items():
                client.log_metric(args.run_id, f"predict_{key}", value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
