"""Part of phase `train_and_test`: the model card of a finished run (`medkit_exp.tracking.model_card`).

The facts come from the built experiment, the run summary, the test intervals' file and the
config (its settings compared with the defaults of the chosen config groups, composed again
with Hydra's compose API). The card is written as ``README.md`` into the best checkpoint's
``model/`` folder (what ``predict --model`` and ``HFEntityMatcher`` load, the place a Hugging
Face model folder keeps its card); on a tracked run also beside ``MLmodel`` in the logged
MLflow model, as the run artifact ``model_card.md`` (the run's ``best_checkpoint/`` artifact is
uploaded when training ends, before the test scores are known) and as the description of the
version ``tracking.register_as`` registered. A card that cannot be
written only warns: it never costs the run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medkit_exp.app.build import Experiment
from medkit_exp.app.model_sources import base_model
from medkit_exp.tracking.model_card import CARD_FILE, ModelCardFacts, model_card, registry_description

log = logging.getLogger("medkit_exp")

RUN_ARTIFACT = "model_card.md"
# Settings that change where or how a run is logged and shown, not the model it trains.
_NOT_RECIPE = ("tracking.", "callbacks.", "hydra.")
_NOT_RECIPE_KEYS = {"threads", "trainer.output_dir", "trainer.resume_from", "malloc_mmap_threshold_kib"}
_MODELS = "models:/"


def write_model_card(experiment: Experiment, summary: Mapping[str, Any], model_dir: Path,
                     output_dir: Path) -> dict[str, str]:
    """Write the run's card into ``model_dir`` and, on a tracked run, to MLflow (see the module
    docstring); the summary's entry ``model_card`` (its path), or nothing when it failed."""
    from medkit_exp.tracking.secrets import redact_text

    try:
        card = redact_text(model_card(collect_facts(experiment, summary, output_dir)))
        path = Path(model_dir) / CARD_FILE
        path.write_text(card, encoding="utf-8")
    except Exception as exc:  # a card is a help, never a reason to lose a run
        log.warning("Could not write the model card: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return {}
    tracker = experiment.tracker
    if tracker.enabled:
        tracker.log_text(card, RUN_ARTIFACT)
        publish_to_model(card, summary)
    return {"model_card": str(path)}


def publish_to_model(card: str, summary: Mapping[str, Any]) -> None:
    """``README.md`` beside ``MLmodel`` in the run's logged model, and the card as the registered
    version's description; nothing when no model was logged, a warning when MLflow refuses."""
    model_uri = str(summary.get("model_uri") or "")
    if not model_uri.startswith(_MODELS):
        return
    import mlflow

    client = mlflow.MlflowClient()
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / CARD_FILE
            path.write_text(card, encoding="utf-8")
            client.log_model_artifact(model_uri.removeprefix(_MODELS), str(path))
        registered = str(summary.get("registered_model") or "")
        if registered.startswith(_MODELS):
            name, version = registered.removeprefix(_MODELS).rsplit("/", 1)
            client.update_model_version(name, version, description=registry_description(card))
    except Exception as exc:  # MLflow's errors vary with the store; the checkpoint keeps its card
        log.warning("The model card was not added to MLflow model %s: %s", model_uri,
                    f"{type(exc).__name__}: {exc}".splitlines()[0], exc_info=log.isEnabledFor(logging.DEBUG))


def collect_facts(experiment: Experiment, summary: Mapping[str, Any], output_dir: Path) -> ModelCardFacts:
    """What the card of this finished run says (`ModelCardFacts`), from the run's own objects."""
    from medkit_exp.app.tracker import hydra_overrides
    from medkit_exp.tracking import git_tags
    from medkit_exp.tracking.secrets import redact_override

    cfg, component, data = experiment.cfg, experiment.component, experiment.data
    node = cfg.component if isinstance(cfg.component, DictConfig) else {}
    test_metrics = {k.removeprefix("test_"): float(v) for k, v in summary.items()
                    if k.startswith("test_") and _is_number(v) and not k.endswith(("_ci_low", "_ci_high"))}
    intervals = read_intervals(output_dir) if "interval_note" in summary else None
    task = task_of(component, intervals)
    git = git_tags(Path(__file__).resolve().parent)
    base = base_model(experiment.base_models)
    return ModelCardFacts(
        task=task,
        component=experiment.choices.get("component", ""),
        component_target=str(node.get("_target_") or ""),
        labels=[str(label) for label in (getattr(component, "labels", None) or [])],
        base_model=(base.given if base else str(node.get("model") or getattr(component, "model_name_or_path", "")
                                                or "") or None),
        base_model_resolved=base.concrete if base else None,
        base_run=base.source_run_id if base else None,
        tagging_scheme=getattr(component, "tagging_scheme", None),
        max_length=node.get("max_length") or getattr(component, "tokenizer_max_length", None),
        split_sentences=bool(getattr(component, "split_sentences", False)),
        data_name=data.name,
        data_digest=data.digest(),
        data_source=data.source,
        data_summary=dict(data.summary()),
        overrides=[redact_override(o) for o in hydra_overrides()],
        changed_settings=changed_settings(cfg),
        test_metrics=test_metrics,
        no_test_reason=no_test_reason(experiment, summary),
        headline=headline_metrics(component, test_metrics, intervals),
        test_note=str(getattr(component, "test_note", "") or ""),
        intervals=intervals,
        no_interval_reason="" if intervals else no_interval_reason(experiment, output_dir),
        dev_metrics={k.removeprefix("eval_"): float(v) for k, v in summary.items()
                     if k.startswith("eval_") and _is_number(v)},
        seed=experiment.trainer_cfg.seed,
        best_epoch=summary.get("best_epoch"),
        epochs=experiment.trainer_cfg.epochs,
        checkpoint_metric=experiment.trainer_cfg.checkpoint_metric,
        cv=cv_facts(cfg, data.summary()),
        git={k: v for k, v in git.items() if k in ("git.commit", "git.branch", "git.dirty")},
        run_id=experiment.tracker.run_id,
        experiment=cfg.tracking.experiment if experiment.tracker.enabled else None,
        model_uri=str(summary["model_uri"]) if str(summary.get("model_uri", "")).startswith(_MODELS) else None,
        registered_uri=summary.get("registered_model"),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def task_of(component: Any, intervals: Mapping[str, Any] | None) -> str:
    """``ner`` for a tagger, ``classification`` for a segment classifier, else the kind of its test
    predictions (``""`` when unknown)."""
    if getattr(component, "tagging_scheme", None):
        return "ner"
    if getattr(component, "attr_label", None):
        return "classification"
    headline = list((intervals or {}).get("headline") or [])
    return {"f1": "ner", "accuracy": "classification"}.get(headline[-1] if headline else "", "")


def headline_metrics(component: Any, test_metrics: Mapping[str, float],
                     intervals: Mapping[str, Any] | None) -> list[str]:
    """The scores the card shows first: the component's ``summary_metrics``, else those of the
    intervals, else every overall (not per-label) test score, at most eight."""
    from medkit_exp.training.callbacks import is_per_label

    for names in (getattr(component, "summary_metrics", None), (intervals or {}).get("headline")):
        shown = [n for n in names or () if n in test_metrics]
        if shown:
            return shown
    return [n for n in test_metrics if not is_per_label(n)][:8]


def read_intervals(output_dir: Path) -> dict[str, Any] | None:
    """``predictions/test_intervals.json`` of the run, if written."""
    from medkit_exp.app.evaluation import INTERVALS_FILE
    from medkit_exp.text.predictions import predictions_file

    path = predictions_file(Path(output_dir), "test").with_name(INTERVALS_FILE)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def no_test_reason(experiment: Experiment, summary: Mapping[str, Any]) -> str:
    if summary.get("pruned_at_epoch") is not None:
        return f"the Optuna trial was pruned at epoch {summary['pruned_at_epoch']}, before testing"
    if not experiment.data.splits.get("test"):
        return "the data has no test split"
    return "the component's test scoring returned none"


def no_interval_reason(experiment: Experiment, output_dir: Path) -> str:
    from medkit_exp.app.evaluation import evaluation_settings
    from medkit_exp.text.predictions import predictions_file

    if evaluation_settings(experiment.cfg).resamples == 0:
        return "evaluation.resamples=0"
    if not predictions_file(Path(output_dir), "test").is_file():
        return "the run stored no per-document test predictions to resample"
    return "resampling needs at least 2 test documents"


def cv_facts(cfg: DictConfig, data_summary: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The ``cv.*`` settings of a cross-validation job, its parent run, and the number of groups its
    data summary's ``cv`` entry gives; None outside cross-validation."""
    cv = cfg.get("cv")
    if not isinstance(cv, DictConfig) or cv.get("fold") is None or cv.get("folds") is None:
        return None
    fold_info = (data_summary or {}).get("cv")
    groups = fold_info.get("groups") if isinstance(fold_info, Mapping) else None
    return {"fold": cv.get("fold"), "folds": cv.get("folds"), "seed": cv.get("seed"), "group_by": cv.get("group_by"),
            "stratify": bool(cv.get("stratify", False)), "groups": groups,
            "parent_run_id": os.environ.get("MEDKIT_EXP_PARENT_RUN_ID")}


# ------------------------------------------------------------------------------------------ recipe
def changed_settings(cfg: DictConfig) -> list[tuple[str, str, str]] | None:
    """``(key, value, default)`` of every resolved setting of ``cfg`` that differs from the defaults
    of its config groups (settings of tracking and display left out); None outside a Hydra job or
    when the defaults cannot be composed."""
    from medkit_exp.tracking import flatten_params
    from medkit_exp.tracking.secrets import redact

    try:
        defaults = default_config()
        if defaults is None:
            return None
        current = flatten_params(redact(OmegaConf.to_container(cfg, resolve=True)))
        default = flatten_params(redact(OmegaConf.to_container(defaults, resolve=True)))
    except Exception as exc:  # an interpolation that resolves only in the job, a config the defaults lack...
        log.debug("The run's settings were not compared with the defaults: %s", exc, exc_info=True)
        return None
    keys = [*current, *(k for k in default if k not in current)]
    return [(key, current.get(key, "(removed)"), default.get(key, "(not in the defaults)")) for key in keys
            if current.get(key) != default.get(key) and not is_quiet(key)]


def is_quiet(key: str) -> bool:
    """A setting that changes where or how the run is logged and shown, not its model."""
    return key in _NOT_RECIPE_KEYS or key.startswith(_NOT_RECIPE)


def default_config() -> DictConfig | None:
    """The job's primary config composed again with the job's choices of its config groups
    (``component=hf_segment_classifier``...) and no other override; None outside a Hydra job."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if not (HydraConfig.initialized() and GlobalHydra.instance().is_initialized()):
        return None
    job = HydraConfig.get()
    base = compose(config_name=job.job.config_name, return_hydra_config=True)
    base_choices = base.hydra.runtime.choices
    chosen = job.runtime.choices
    groups = [f"{group}={chosen[group]}" for group in base_choices
              if not str(group).startswith("hydra/") and chosen.get(group) is not None
              and chosen[group] != base_choices[group]]
    return compose(config_name=job.job.config_name, overrides=groups)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
