"""`EntityMatcherModel`: an `HFEntityMatcher` checkpoint as an MLflow pyfunc model.

Input: texts, as a list of str or a pandas DataFrame with a ``text`` column (or a single
column). The logged input signature is one *unnamed* ``string`` column, which is what lets
MLflow accept a plain list as well as a DataFrame; a REST client posts
``{"inputs": ["...", "..."]}`` or ``{"dataframe_records": [{"text": "..."}]}``.

Output: a DataFrame with one row per entity, in text order then span order, with columns

* ``text_index`` (long): which input text the entity was found in;
* ``start``, ``end`` (long): its characters ``[start, end)`` in that text;
* ``label`` (string): the entity label;
* ``text`` (string): ``texts[text_index][start:end]``;
* ``score`` (double): the model's confidence (mean probability of the entity's tags).

A text without entities has no row; `entities_by_text` regroups the rows per text.

Bad input is refused with MLflow's "invalid parameter" error, which the scoring server of
``mlflow models serve`` answers as a 400 with the message, and goes on serving: a value that
is not a text, a frame without a ``text`` column, or more than ``max_chars`` characters of
text in one call (default `MAX_CHARS`: a larger request would hold the server for minutes
and outlive MLflow's 60 s request timeout).

The model is logged *from code* (MLflow's recommended way; nothing is pickled): the logged
model holds `pyfunc_entry.py`, which imports this module, so **medkit_exp must be installed
wherever the model is loaded or served** (``mlflow models serve --env-manager local`` from
the project's environment). The logged ``requirements.txt`` pins the versions of this
environment, ``medkit_exp`` included, so a load elsewhere warns about any mismatch.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

TEXT_COLUMN = "text"
ARTIFACT_KEY = "hf_model"  # the checkpoint's HF model/ folder, inside the logged model
OUTPUT_COLUMNS = {"text_index": "int64", "start": "int64", "end": "int64", "label": "object",
                  "text": "object", "score": "float64"}
# Distributions the model needs at load time; their installed versions are pinned in requirements.txt.
REQUIREMENTS = ("medkit_exp", "mlflow", "torch", "transformers", "tokenizers", "numpy", "pandas")
MAX_CHARS = 1_000_000  # characters of text per predict call (about 250 pages); model_config "max_chars"
EXAMPLE_TEXTS = ["The patient was started on metformin for type 2 diabetes.", "No acute distress."]


class EntityMatcherModel(PythonModel):
    """Pyfunc wrapper of `HFEntityMatcher`; see the module docstring for inputs and outputs.

    ``model_config`` keys (set at logging time): ``batch_size`` (windows per forward pass,
    default 32), ``split_sentences`` (predict sentence by sentence, as a model trained with
    ``component.split_sentences=true`` saw its inputs; default false), ``device`` (default cpu),
    ``precision`` (``fp32``, ``bf16``, ``int8`` or ``auto``; default fp32, see `HFEntityMatcher`),
    ``max_chars`` (characters of text accepted per call, default `MAX_CHARS`). Override them when
    loading: ``mlflow.pyfunc.load_model(uri, model_config={"precision": "bf16"})``.
    """

    def __init__(self) -> None:
        self.matcher: Any = None
        self.split_sentences = False
        self.max_chars = MAX_CHARS

    def load_context(self, context: PythonModelContext) -> None:
        from medkit_exp.text.ner import HFEntityMatcher

        config = dict(context.model_config or {})
        self.split_sentences = bool(config.get("split_sentences", False))
        self.max_chars = int(config.get("max_chars", MAX_CHARS))
        self.matcher = HFEntityMatcher(model=context.artifacts[ARTIFACT_KEY], device=config.get("device", "cpu"),
                                       batch_size=int(config.get("batch_size", 32)),
                                       precision=str(config.get("precision", "fp32")))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Entities of each input text, as flat rows (see `OUTPUT_COLUMNS`)."""
        from mlflow.exceptions import MlflowException

        if self.matcher is None:
            raise RuntimeError("EntityMatcherModel.predict called before load_context: "
                               "load it with mlflow.pyfunc.load_model")
        try:
            texts = texts_of(model_input)
        except (TypeError, ValueError) as exc:
            raise MlflowException.invalid_parameter_value(
                f"{exc}; send texts, e.g. {{\"inputs\": [\"...\"]}}") from None
        size = sum(map(len, texts))
        if size > self.max_chars:
            raise MlflowException.invalid_parameter_value(
                f"the input holds {size:,} characters of text, more than the {self.max_chars:,} this model takes "
                "in one call; send fewer or shorter texts (or load it with model_config={'max_chars': N})")
        return predict_entities(self.matcher, texts, self.split_sentences)


def texts_of(model_input: Any) -> list[str]:
    """The texts of a pyfunc input: a DataFrame with a ``text`` column (or one unnamed column, as MLflow makes
    of a list), a list of str, or one str."""
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN in model_input.columns:
            values = list(model_input[TEXT_COLUMN])
        elif len(model_input.columns) == 1 and not isinstance(model_input.columns[0], str):
            values = list(model_input.iloc[:, 0])  # a list converted by MLflow: one column named 0
        else:  # a named column (age, note...) is not the texts; MLflow's input check may have dropped others
            raise ValueError(f"the input DataFrame needs a {TEXT_COLUMN!r} column, "
                             f"got columns {list(model_input.columns)}")
    elif isinstance(model_input, dict):
        if TEXT_COLUMN not in model_input:
            raise ValueError(f"the input dict needs a {TEXT_COLUMN!r} key, got keys {sorted(model_input)}")
        values = model_input[TEXT_COLUMN]
        values = [values] if isinstance(values, str) else list(values)
    elif isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, (list, tuple, pd.Series)):
        values = list(model_input)
    else:
        raise TypeError(f"input must be texts (a list of str or a DataFrame with a {TEXT_COLUMN!r} column), "
                        f"got {type(model_input).__name__}")
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise TypeError(f"input text {bad} is a {type(values[bad]).__name__}, not a str")
    return values


def predict_entities(matcher: Any, texts: Sequence[str], split_sentences: bool = False) -> pd.DataFrame:
    """Run ``matcher`` (an `HFEntityMatcher`) on ``texts``; one row per entity (see `OUTPUT_COLUMNS`)."""
    from medkit_exp.core import TextDocument

    docs = [TextDocument(text=text, id=str(i)) for i, text in enumerate(texts)]
    if split_sentences:
        from medkit_exp.text.ner.evaluation import predict_by_sentence

        predictions = predict_by_sentence(matcher, docs)
    else:
        predictions = matcher.predict(docs)
    rows = [
        {"text_index": i, "start": e.spans[0].start, "end": e.spans[-1].end, "label": e.label,
         "text": texts[i][e.spans[0].start:e.spans[-1].end],
         "score": float(e.score if e.score is not None else float("nan"))}
        for i, entities in enumerate(predictions)
        for e in sorted(entities, key=lambda e: (e.spans[0].start, e.spans[-1].end))
    ]
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS)).astype(OUTPUT_COLUMNS)


def entities_by_text(rows: pd.DataFrame | Iterable[dict[str, Any]], n_texts: int) -> list[list[dict[str, Any]]]:
    """Regroup flat output rows (a DataFrame, or the records of a REST answer) into one list per text."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    grouped: list[list[dict[str, Any]]] = [[] for _ in range(n_texts)]
    for row in records:
        grouped[int(row["text_index"])].append({k: v for k, v in row.items() if k != "text_index"})
    return grouped


def signature():
    """The model signature: one unnamed string column in (texts), the `OUTPUT_COLUMNS` out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    kinds = {"int64": "long", "object": "string", "float64": "double"}
    outputs = Schema([ColSpec(kinds[dtype], name) for name, dtype in OUTPUT_COLUMNS.items()])
    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=outputs)


def pinned_requirements() -> list[str]:
    """``name==version`` for each of `REQUIREMENTS` installed here (local labels like ``+cpu`` dropped)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins
