"""The model card (``README.md``) of a trained model, written from plain facts about its run.

`model_card` is a pure function of `ModelCardFacts`: what the model does, its base model,
data, recipe, test scores with their confidence intervals, cross-validation fold, how to
reproduce it, provenance and limitations. The app collects the facts from a finished run and
writes the card beside the best checkpoint, into the logged MLflow model and the registered
version's description (`medkit_exp.app.model_card`). Every figure is printed with 4 decimals,
as the run summary prints it, from the same numbers the run logs as metrics.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medkit_exp.tracking import markdown as md

CARD_FILE = "README.md"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # the packaged default base model (English)
# What the model registry stores at most as a version's description (VARCHAR(5000) in MLflow's SQL schema).
REGISTRY_DESCRIPTION_LIMIT = 5000
TASKS = {"ner": "Named-entity recognition", "classification": "Segment classification"}
# Keys of a split's data summary shown as table columns, in this order, when the summary has them.
_COUNT_COLUMNS = ("documents", "items", "entities", "segments")


@dataclass
class ModelCardFacts:
    """What a model card says, as plain values (every field may be left empty).

    Args:
        task: ``"ner"``, ``"classification"`` or another word for a user's component.
        component: the ``component`` config choice (``hf_ner``); ``component_target`` its ``_target_``.
        labels: the entity labels (NER) or classes (classification).
        base_model: ``component.model`` as configured (hub name, path or model URI); for a model URI,
            ``base_model_resolved`` is what it named (``models:/<name>/<version>``...) and ``base_run``
            the MLflow run that produced it.
        tagging_scheme, max_length, split_sentences: NER settings (``iob2``/``bilou``, tokens per window).
        data_name, data_digest, data_source: the corpus and its digest (the ``dataset.*`` tags).
        data_summary: per split, the corpus summary (``corpus_summary.json``: documents, entities...).
        overrides: the job's command-line overrides (``hydra.overrides``).
        changed_settings: ``(key, value, default)`` of every resolved setting that differs from the
            defaults of the chosen config groups; None when the defaults could not be composed.
        test_metrics: the test scores without their ``test_`` prefix (as logged); empty: no test score,
            for the reason ``no_test_reason``.
        headline: the test metrics shown first (e.g. precision, recall, f1).
        test_note: how the test split was scored (e.g. "exact character spans").
        intervals: the content of ``predictions/test_intervals.json``; None: no interval.
        no_interval_reason: why there is no interval, when ``intervals`` is None.
        dev_metrics: the dev scores of the best epoch (without ``eval_``).
        seed: ``trainer.seed``.
        best_epoch, epochs, checkpoint_metric: which epoch was kept, of how many, chosen on what.
        cv: for a cross-validation job, ``{"fold", "folds", "seed", "group_by", "groups", "stratify",
            "parent_run_id"}``.
        git: the run's git tags (``git.commit``, ``git.branch``, ``git.dirty``).
        run_id, experiment: the MLflow run; ``model_uri`` and ``registered_uri`` the logged model.
        date: when the card was written (ISO 8601).
    """

    task: str = ""
    component: str = ""
    component_target: str = ""
    labels: list[str] = field(default_factory=list)
    base_model: str | None = None
    base_model_resolved: str | None = None
    base_run: str | None = None
    tagging_scheme: str | None = None
    max_length: int | None = None
    split_sentences: bool = False
    data_name: str = ""
    data_digest: str = ""
    data_source: str = ""
    data_summary: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    changed_settings: list[tuple[str, str, str]] | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    no_test_reason: str = "the data has no test split"
    headline: list[str] = field(default_factory=list)
    test_note: str = ""
    intervals: dict[str, Any] | None = None
    no_interval_reason: str = ""
    dev_metrics: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    checkpoint_metric: str | None = None
    cv: dict[str, Any] | None = None
    git: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    experiment: str | None = None
    model_uri: str | None = None
    registered_uri: str | None = None
    date: str = ""


def model_card(facts: ModelCardFacts) -> str:
    """The Markdown model card of ``facts`` (see `ModelCardFacts`)."""
    sections = [_title(facts), _model(facts), _data(facts), _recipe(facts), _scores(facts), _cv(facts),
                _reproduce(facts), _provenance(facts), _limitations(facts)]
    return "\n\n".join(s for s in sections if s).rstrip() + "\n"


def registry_description(card: str, limit: int = REGISTRY_DESCRIPTION_LIMIT) -> str:
    """The card as a registered version's description: whole when it fits in ``limit`` characters, else
    its first sections that fit, then a line pointing to the full ``README.md``."""
    if len(card) <= limit:
        return card
    tail = f"\n\n(The full card is {CARD_FILE} in the model's artifacts; it is longer than the registry keeps.)\n"
    kept = ""
    for section in card.split("\n\n## "):
        candidate = f"{kept}\n\n## {section}" if kept else section
        if len(candidate.rstrip()) + len(tail) > limit:
            break
        kept = candidate
    return (kept.rstrip() or card[: limit - len(tail)].rstrip()) + tail


# ------------------------------------------------------------------------------------------ sections
def _title(facts: ModelCardFacts) -> str:
    head = f"# {facts.component or 'Model'}" + (f" on {facts.data_name}" if facts.data_name else "")
    labels = ", ".join(f"`{label}`" for label in facts.labels)
    origin = f"fine-tuned from `{facts.base_model}` with medkit_exp" if facts.base_model else "trained with medkit_exp"
    origin += f" on {facts.date[:10]}" if facts.date else ""
    origin += f" (MLflow run `{facts.run_id}`)" if facts.run_id else ""
    if facts.task == "ner":
        does = f"Finds the entities {labels} in text, as character spans." if labels else "Finds entities in text."
    elif facts.task == "classification":
        does = f"Classifies each mention into one of the classes {labels}." if labels else "Classifies mentions."
    else:
        kind = f"{facts.task} model" if facts.task else "model"
        return f"{head}\n\nA {kind}" + (f" over the labels {labels}" if labels else "") + f", {origin}."
    return f"{head}\n\n{does} {origin[0].upper()}{origin[1:]}."


def _model(facts: ModelCardFacts) -> str:
    kind = "entity labels" if facts.task == "ner" else "classes" if facts.task == "classification" else "labels"
    lines = ["## Model", ""]
    if facts.task:
        lines.append(f"- Task: {TASKS.get(facts.task, facts.task)}")
    if facts.labels:
        lines.append(f"- {kind.capitalize()} ({len(facts.labels)}): {', '.join(facts.labels)}")
    if facts.component:
        target = f" (`{facts.component_target}`)" if facts.component_target else ""
        lines.append(f"- Component: `{facts.component}`{target}")
    if facts.base_model:
        resolved = facts.base_model_resolved
        lines.append(f"- Base model: `{facts.base_model}`"
                     + (f" (`{resolved}`)" if resolved and resolved != facts.base_model else "")
                     + (f", from MLflow run `{facts.base_run}`" if facts.base_run else ""))
    if facts.task == "ner":
        if facts.tagging_scheme:
            lines.append(f"- Tagging scheme: {facts.tagging_scheme.upper()}")
        if facts.max_length:
            lines.append(f"- Max length: {facts.max_length} tokens per window (longer texts are split into "
                         "overlapping windows)")
        lines.append("- Input unit: " + ("sentences (trained and tested sentence by sentence)"
                                         if facts.split_sentences else "whole documents"))
    if facts.best_epoch is not None:
        chosen, metric = "", facts.checkpoint_metric
        if metric and metric in facts.dev_metrics:
            chosen = f", chosen on dev {metric} = {md.number(facts.dev_metrics[metric])}"
        of = f" of {facts.epochs}" if facts.epochs else ""
        lines.append(f"- Best epoch: {facts.best_epoch}{of}{chosen}")
    return "\n".join(lines) if len(lines) > 2 else ""


def _data(facts: ModelCardFacts) -> str:
    if not (facts.data_name or facts.data_summary):
        return ""
    lines = ["## Data", ""]
    source = f" (source `{facts.data_source}`)" if facts.data_source and facts.data_source != facts.data_name else ""
    lines.append(f"- Corpus: {facts.data_name or 'unnamed'}{source}")
    if facts.data_digest:
        lines.append(f"- Digest: `{facts.data_digest}` (the run's `dataset.digest` tag: the same data gives the "
                     "same digest)")
    table = _data_table(facts.data_summary)
    if table:
        lines += ["", *table]
    return "\n".join(lines)


def _data_table(summary: Mapping[str, Any]) -> list[str]:
    # Entries other than splits (a cross-validation fold's details...) have none of the counts.
    splits = {s: v for s, v in summary.items() if isinstance(v, Mapping)
              and any(k in v for k in (*_COUNT_COLUMNS, "entities_per_label"))}
    if not splits:
        return []
    columns = [c for c in _COUNT_COLUMNS if any(c in v for v in splits.values())]
    labels = sorted({label for v in splits.values() for label in (v.get("entities_per_label") or {})})
    header = ["split", *columns, *(f"`{label}`" for label in labels)]
    rows = [[split, *(md.count(v.get(c)) for c in columns),
             *(md.count((v.get("entities_per_label") or {}).get(label, 0)) for label in labels)]
            for split, v in splits.items()]
    if labels:
        header_note = "Entities per label in the last columns."
        return [*md.table(header, rows), "", header_note]
    return md.table(header, rows)


def _recipe(facts: ModelCardFacts) -> str:
    lines = ["## Recipe", ""]
    if facts.overrides:
        lines.append("Command-line overrides: " + " ".join(f"`{o}`" for o in facts.overrides))
    else:
        lines.append("Command-line overrides: none (the default configuration).")
    if facts.changed_settings is None:
        lines += ["", "The resolved settings could not be compared with the defaults (the run was not launched "
                  "through Hydra); the run's `config.yaml` artifact holds them all."]
    elif facts.changed_settings:
        lines += ["", "Resolved settings that differ from the defaults of the chosen config groups:", ""]
        lines += md.table(["setting", "value", "default"],
                        [[f"`{k}`", f"`{md.short(v)}`", f"`{md.short(d)}`"] for k, v, d in facts.changed_settings])
    else:
        lines += ["", "No resolved setting differs from the defaults of the chosen config groups."]
    return "\n".join(lines)


def _scores(facts: ModelCardFacts) -> str:
    if not facts.test_metrics:
        dev = ", ".join(f"{k} = {md.number(facts.dev_metrics[k])}" for k in facts.headline if k in facts.dev_metrics)
        return (f"## Test scores\n\nNo test score: {facts.no_test_reason}."
                + (f" Dev scores at the best epoch: {dev}." if dev else ""))
    intervals = (facts.intervals or {}).get("intervals") or {}
    lines = ["## Test scores", "", _scores_intro(facts), ""]
    headline = [m for m in facts.headline if m in facts.test_metrics]
    level = md.level(facts.intervals)
    with_ci = any(m in intervals for m in headline)
    header = ["metric", "value", *([f"{level} CI"] if with_ci else [])]
    rows = [[m, md.number(facts.test_metrics[m]), *([md.interval(intervals.get(m))] if with_ci else [])]
            for m in headline]
    lines += md.table(header, rows)
    per_label = _per_label_rows(facts, intervals)
    if per_label:
        lines += ["", "Per label:" if facts.task != "classification" else "Per class:", ""]
        lines += md.table(["label", "precision", "recall", "F1", f"F1 {level} CI", "support"], per_label)
    return "\n".join(lines)


def _scores_intro(facts: ModelCardFacts) -> str:
    how = f" ({facts.test_note})" if facts.test_note else ""
    intro = f"The best checkpoint on the test split{how}."
    if facts.intervals:
        i = facts.intervals
        method = "BCa bootstrap" if str(i.get("method", "")).lower() == "bca" else "percentile bootstrap"
        intro += (f" Confidence intervals: {md.level(i)}, {method} over {int(i.get('resamples', 0)):,} resamples "
                  f"of the {i.get('documents', '?')} test documents (seed {i.get('seed', '?')}).")
    else:
        reason = f": {facts.no_interval_reason}" if facts.no_interval_reason else ""
        intro += f" No confidence interval{reason}."
    return intro


def _per_label_rows(facts: ModelCardFacts, intervals: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for label in facts.labels:
        scores = [facts.test_metrics.get(f"{label}_{s}") for s in ("precision", "recall", "f1")]
        if all(s is None for s in scores):
            continue
        support = facts.test_metrics.get(f"{label}_support")
        rows.append([f"`{label}`", *(md.number(s) for s in scores), md.interval(intervals.get(f"{label}_f1")),
                     md.count(support)])
    return rows


def _cv(facts: ModelCardFacts) -> str:
    cv = facts.cv or {}
    if cv.get("fold") is None or cv.get("folds") is None:
        return ""
    fold, folds = int(cv["fold"]), int(cv["folds"])
    groups = f" ({cv['groups']} groups)" if cv.get("groups") else ""
    grouped = f", documents grouped by `{cv['group_by']}`{groups}" if cv.get("group_by") else ""
    grouped += ", stratified by entity label" if cv.get("stratify") else ""
    lines = ["## Cross-validation", "",
             f"This model is fold {fold} of {folds} (`cv.fold={fold}`, folds numbered from 0; "
             f"`cv.seed={cv.get('seed')}`{grouped}).",
             "Its dev split is the part of train + dev held out from this fold: the best epoch was chosen on it, "
             "and its dev scores are this fold's out-of-fold scores. The test split was held out from every fold."]
    dev = [(k, facts.dev_metrics[k]) for k in facts.headline if k in facts.dev_metrics]
    if dev:
        lines += ["", *md.table(["out-of-fold (dev) metric", "value"], [[k, md.number(v)] for k, v in dev])]
    parent = f" (run `{cv['parent_run_id']}`)" if cv.get("parent_run_id") else ""
    lines += ["", f"The scores over all {folds} folds (mean, standard deviation, CI: the `cv_*` metrics) are on the "
              f"cross-validation parent run{parent}, not in this card."]
    return "\n".join(lines)


def _reproduce(facts: ModelCardFacts) -> str:
    command = " ".join(["python -m medkit_exp", *(shlex.quote(o) for o in facts.overrides)])
    commit = facts.git.get("git.commit")
    lines = ["## How to reproduce", "", "```bash"]
    if commit:
        lines.append(f"git checkout {commit}")
    lines += [command, "```", ""]
    seed = f" The seed, `trainer.seed={facts.seed}`, is part of the configuration." if facts.seed is not None else ""
    notes = ["Run it from the folder the run was launched from, with the same data"
             + (f" (digest `{facts.data_digest}`)" if facts.data_digest else "") + "." + seed]
    if facts.git.get("git.dirty") == "true":
        notes.append("**The code had uncommitted changes** (`git.dirty=true`): the commit alone does not hold it.")
    if not commit:
        notes.append("No git commit was recorded (the code was not in a git repository).")
    return "\n".join(lines) + "\n" + "\n\n".join(notes)


def _provenance(facts: ModelCardFacts) -> str:
    lines = ["## Provenance", ""]
    if facts.run_id:
        experiment = f" (experiment `{facts.experiment}`)" if facts.experiment else ""
        lines.append(f"- MLflow run: `{facts.run_id}`{experiment}")
    if facts.model_uri:
        lines.append(f"- MLflow model: `{facts.model_uri}`")
    if facts.registered_uri:
        lines.append(f"- Registered as: `{facts.registered_uri}`")
    commit = facts.git.get("git.commit")
    if commit:
        branch = f" on branch `{facts.git['git.branch']}`" if facts.git.get("git.branch") else ""
        dirty = {"true": ", with uncommitted changes", "false": ", clean"}.get(facts.git.get("git.dirty", ""), "")
        lines.append(f"- Git commit: `{commit}`{branch}{dirty}")
    if facts.date:
        lines.append(f"- Date: {facts.date}")
    return "\n".join(lines) if len(lines) > 2 else ""


def _limitations(facts: ModelCardFacts) -> str:
    items = []
    if facts.base_model == MINILM:
        items.append(f"Language: English. The base model `{MINILM}` was pretrained on English text; other "
                     "languages will score far below the figures above.")
    elif facts.base_model:
        items.append(f"Language: that of the base model `{facts.base_model}` and of the training corpus; check both "
                     "before using it on another language.")
    corpus = facts.data_name or "the training corpus"
    items.append(f"Domain: trained and tested on {corpus} only. Texts of another kind (note types, specialties, "
                 "institutions, periods) can score well below the test figures.")
    if facts.task == "ner" and facts.tagging_scheme:
        scheme = facts.tagging_scheme.lower()
        if scheme == "iob2":
            items.append("Tagging scheme: IOB2. transformers' `pipeline(\"token-classification\")` reads IOB2 tags, "
                         "but it does not split long texts into windows as medkit_exp's `HFEntityMatcher` does.")
        else:
            items.append(f"Tagging scheme: {scheme.upper()}. transformers' `pipeline(\"token-classification\")` reads "
                         "IOB2 tags only and would mangle this model's entities: load it with medkit_exp's "
                         "`HFEntityMatcher`, `python -m medkit_exp.predict` or the logged MLflow model.")
    if facts.task == "ner" and facts.split_sentences:
        items.append("Trained on sentences: predict sentence by sentence (`--split-sentences`, or the logged MLflow "
                     "model, which does it), as the test scores were computed.")
    if facts.test_metrics:
        documents = (facts.intervals or {}).get("documents")
        size = f" of {documents} documents" if documents else ""
        ci = (" Its confidence intervals cover the resampling of those documents, not other corpora."
              if facts.intervals else " No confidence interval was computed: the figures' uncertainty is unknown.")
        items.append(f"Scores: measured on one test set{size}.{ci}")
    items.append("No clinical validation: this model was not evaluated for clinical use and must not drive care "
                  "decisions without a validation of its own.")
    return "\n".join(["## Limitations", "", *(f"- {item}" for item in items)])
