"""The project's Optuna sweeper: search space, pruning, failed trials, the summary, resume.

The CLI tests search over a learning rate that learns (5e-3), one that does not (1e-12: its
eval loss stays where the random weights put it) and one that blows up (1e30: NaN loss),
minimising eval loss with the median pruner after one trial. Which trial gets which value
depends on the seeded sampler; what each trial becomes is then fixed by its value and the
trials before it, and that is what is asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from test_cli import cli_env, client_for, run_cli

LEARNS, STILL, BLOWS_UP = 5e-3, 1e-12, 1e30


def search_args(model_dir, *extra: str) -> list[str]:
    return ["hparams_search=ner_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=1",
            "hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_options.n_startup_trials=1",
            "objective=eval_loss", "hydra.sweeper.direction=minimize", f"component.model={model_dir}",
            "data.max_docs=16", "threads=1", "callbacks.progress_bars=false", "trainer.epochs=2",
            "trainer.batch_size=8", "scheduler.warmup_ratio=0", "component.tagging_scheme=iob2",
            "component.attention_dropout=0", "tracking.experiment=search", *extra]


def load_study(workdir):
    import optuna

    storage = f"sqlite:///{workdir / 'multirun' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


# ---------------------------------------------------------------------------- search space
def test_search_space_reads_hydra_sweep_syntax():
    from medkit_exp.sweeps.search_space import SearchSpace

    space = SearchSpace.parse(
        {"trainer.lr": "tag(log, interval(1e-5, 3e-4))", "trainer.batch_size": "choice(8, 16)",
         "trainer.epochs": "range(2, 5)", "+component.layers": "tag(int, interval(1, 3))",
         "trainer.seed": "choice(0, 1)"},
        ["trainer.seed=3", "component.tagging_scheme=iob2,bilou", "data.max_docs=10"])
    by_name = {p.name: p for p in space.parameters}
    assert set(by_name) == {"trainer.lr", "trainer.batch_size", "trainer.epochs", "component.layers",
                            "component.tagging_scheme"}  # the command line fixed the seed
    assert (by_name["trainer.lr"].kind, by_name["trainer.lr"].log, by_name["trainer.lr"].high) == ("float", True, 3e-4)
    epochs = by_name["trainer.epochs"]
    assert (epochs.kind, epochs.low, epochs.high) == ("int", 2, 4)
    assert by_name["component.layers"].kind == "int" and by_name["component.layers"].key == "+component.layers"
    assert by_name["component.tagging_scheme"].choices == ("iob2", "bilou")
    assert space.fixed == ("trainer.seed=3", "data.max_docs=10")
    assert space.digest("maximize") == SearchSpace.parse(
        {"trainer.seed": "choice(0, 1)", "+component.layers": "tag(int, interval(1, 3))",
         "trainer.epochs": "range(2, 5)", "trainer.batch_size": "choice(8, 16)",
         "trainer.lr": "tag(log, interval(1e-5, 3e-4))"},
        ["data.max_docs=10", "component.tagging_scheme=iob2,bilou", "trainer.seed=3"]).digest("maximize")
    assert space.digest("maximize") != space.digest("minimize")


def test_search_space_writes_overrides_hydra_reads_back():
    import optuna

    from medkit_exp.sweeps.search_space import SearchSpace

    space = SearchSpace.parse({"a": "choice('x y', true, 0.5, iob2, 'a=b')", "b": "interval(0.1, 0.2)"}, ["c=1"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for _ in range(8):
        trial = study.ask()
        overrides = space.suggest(trial)
        values = {o.key_or_group: o.value() for o in parser.parse_overrides(overrides)}
        assert values == {"c": 1, **trial.params}


@pytest.mark.parametrize("params, message", [
    ({}, "no parameter to search"),
    ({"x": "interval(2, 1)"}, "interval(2.0, 1.0) is empty"),
    ({"x": "range(0.5, 2)"}, "range() takes integers"),
])
def test_search_space_errors_name_the_key_and_the_fix(params, message):
    from medkit_exp.sweeps.search_space import SearchSpace, SearchSpaceError

    with pytest.raises(SearchSpaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchSpace.parse(params, [])


# ---------------------------------------------------------------------------- the CLI
def test_a_search_prunes_the_trial_that_does_not_learn_and_survives_one_that_fails(workdir, tiny_bert_dir):
    from optuna.trial import TrialState

    result = run_cli(search_args(tiny_bert_dir, "hydra.sweeper.n_trials=5",
                                 f"trainer.lr=choice({LEARNS},{STILL},{BLOWS_UP})"), workdir, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    trials = load_study(workdir).trials
    lrs = [t.params["trainer.lr"] for t in trials]
    assert set(lrs) == {LEARNS, STILL, BLOWS_UP}, f"seed 1 no longer draws every value: {lrs}"
    failed = [t for t in trials if t.params["trainer.lr"] == BLOWS_UP]
    assert all(t.state == TrialState.FAIL and "loss is nan" in t.user_attrs["failure"] for t in failed)
    first_learner = min(t.number for t in trials if t.params["trainer.lr"] == LEARNS)
    for t in trials:
        if t.params["trainer.lr"] == LEARNS:
            assert t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2]
        elif t.params["trainer.lr"] == STILL:  # worse than the median once a learner has finished
            expected = TrialState.PRUNED if t.number > first_learner else TrialState.COMPLETE
            assert t.state == expected, (t.number, lrs)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["pruned_at_epoch"] == 1 and t.user_attrs["epochs_run"] == 1 for t in pruned)
    assert result.stderr.strip().splitlines()[-1].startswith(f"medkit_exp: error: {len(failed)} sweep job(s) failed")

    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name("search").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(children) == 5
    for t in trials:
        run = children[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["sweep.trial"] == str(t.number)
        assert run.info.status == ("FAILED" if t.state == TrialState.FAIL else "FINISHED")
        if t.state == TrialState.PRUNED:
            assert run.data.tags["sweep.pruned"] == "true" and run.data.tags["sweep.pruned_at_epoch"] == "1"
            assert os.path.isdir(os.path.join(run.data.tags["checkpoint.dir"], "checkpoint_001", "model"))
            assert not any(k.startswith("test_") for k in run.data.metrics)  # not worth scoring
        else:
            assert "sweep.pruned" not in run.data.tags

    metrics, tags = parent.data.metrics, parent.data.tags
    counts = {s: sum(t.state == getattr(TrialState, s.upper()) for t in trials) for s in ("complete", "pruned", "fail")}
    assert {s: metrics[f"search_trials_{s}"] for s in counts} == counts
    assert (metrics["search_epochs_run"] == sum(t.user_attrs["epochs_run"] for t in trials)
            < metrics["search_epochs_full"] == 10)
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    best_run = children[best.user_attrs["mlflow_run_id"]]
    assert tags["search.best_trial"] == str(best.number) and tags["search.best_run_id"] == best_run.info.run_id
    assert (metrics["search_best_eval_loss"] == pytest.approx(best_run.data.metrics["best_eval_loss"])
            == pytest.approx(best.value))
    assert json.loads(tags["search.best_params"]) == {"trainer.lr": LEARNS}
    assert (f"trials       : {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed"
            in result.stdout)
    assert f"best         : trial {best.number} eval_loss={best.value:.4f} trainer.lr={LEARNS}" in result.stdout


def test_a_search_killed_mid_trial_resumes_where_it_stopped_with_parallel_jobs(workdir, tiny_bert_dir):
    from optuna.trial import TrialState

    args = search_args(tiny_bert_dir, "hydra.sweeper.n_trials=3", "trainer.lr=choice(5e-3,4e-3,3e-3)")
    process = subprocess.Popen([sys.executable, "-m", "medkit_exp", *args], cwd=workdir, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in process.stdout:  # kill -9 once the first trial is training
            if line.startswith("Epoch 1 "):
                break
        else:
            pytest.fail("the search ended before its first epoch")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    (interrupted,) = load_study(workdir).trials
    assert interrupted.state == TrialState.RUNNING  # as a kill leaves it

    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    result = run_cli([*args, *parallel], workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 trial(s) done, 1 interrupted one(s) to try again; running 3 of hydra.sweeper.n_trials=3" in result.stdout
    trials = load_study(workdir).trials
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["interrupted"] is True
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 0)
    assert retry.params == interrupted.params
    for t in trials[1:]:  # the median pruner may stop a trial worse than those already reported
        if t.state == TrialState.PRUNED:
            assert sorted(t.intermediate_values) == [1] and t.user_attrs["pruned_at_epoch"] == 1
        else:
            assert t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2]

    again = run_cli([*args, *parallel], workdir, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 trial(s) done; running 0 of hydra.sweeper.n_trials=3" in again.stdout
    assert len(load_study(workdir).trials) == 4


def test_a_bad_pruner_or_a_study_made_by_another_search_is_refused_in_one_line(workdir, tiny_bert_dir):
    result = run_cli(search_args(tiny_bert_dir, "hydra.sweeper.pruner=mediane"), workdir, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "medkit_exp: error: hydra.sweeper.pruner=mediane is not a pruner; use one of none, median, successive_halving, "
        "hyperband"]
    import optuna

    optuna.create_study(study_name="mine", storage=f"sqlite:///{workdir / 'taken.db'}").set_user_attr(
        "medkit_exp.search_digest", "other")
    result = run_cli(search_args(tiny_bert_dir, "hydra.sweeper.study_name=mine",
                                 f"hydra.sweeper.storage=sqlite:///{workdir / 'taken.db'}"), workdir, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("medkit_exp: error: Optuna study mine in sqlite:///")
    assert "was made by another search" in line
    # Refused before any trial ran: no empty FAILED parent run is left in MLflow.
    client = client_for(workdir)
    experiment = client.get_experiment_by_name("search")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


def test_a_trial_is_pruned_before_its_last_epoch_never_after_it(tmp_path):
    """A pruner that prunes every report (a threshold no value reaches): the trial stops after
    epoch 1 of 3, while a trial reporting its last planned epoch completes."""
    import optuna

    from medkit_exp.sweeps.optuna_trial import OptunaTrialReporter
    from medkit_exp.training.callbacks import StopTraining

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # an F1 is never above 2: every report prunes
    first, last = study.ask().number, study.ask().number
    pruned = OptunaTrialReporter(storage, "s", first, "eval_f1", epochs=3, pruner=always)
    with pytest.raises(StopTraining, match="pruned by Optuna after epoch 1"):
        pruned.on_epoch_end({"eval": {"f1": 0.5}}, epoch=1)
    assert pruned.pruned_at_epoch == 1

    completes = OptunaTrialReporter(storage, "s", last, "eval_f1", epochs=1, pruner=always)
    completes.on_epoch_end({"eval": {"f1": 0.5}}, epoch=1)
    assert completes.pruned_at_epoch is None
    assert study.trials[last].intermediate_values == {1: 0.5}
