"""One experiment run: validate -> build -> train and test (tracked) -> report.

`run(cfg)` is what `python -m medkit_exp` calls for each job (one job, or each job of a sweep).
It returns the objective metric so that Hydra's sweepers can optimise it. Each phase is a module
of this package that reads on its own.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from medkit_exp.app.build import build
from medkit_exp.app.output_redaction import redact_process_output
from medkit_exp.app.report import report
from medkit_exp.app.resume import resume_point
from medkit_exp.app.stopping import run_ends_cleanly
from medkit_exp.app.tracker import start_tracking
from medkit_exp.app.train_and_test import train_and_test
from medkit_exp.app.validate import validate
from medkit_exp.sweeps.resume import prepare_job
from medkit_exp.training.distributed import DistributedContext
from medkit_exp.training.phases import ENDING, RunPhases


def run(cfg: DictConfig) -> float | None:
    """Train, evaluate on test, track; return ``cfg.objective`` from the run summary.

    The run goes through named phases (`medkit_exp.training.phases`); SIGINT, SIGTERM and SIGHUP
    stop it cleanly in any of them (`medkit_exp.app.stopping`), and the caller's handlers come back after."""
    started = time.perf_counter()
    redact_process_output()  # no credential in a line printed or logged from here on
    trainer_cfg = validate(cfg)  # bad settings fail here, before anything heavy is imported
    job = prepare_job(cfg, trainer_cfg)  # in a resumed sweep: skip, resume or re-run this job
    if job.skipped:
        return job.objective
    process = DistributedContext.from_env()
    # Under torchrun the launcher owns signals (the Trainer does the same).
    with RunPhases(handle_signals=not process.enabled) as phases:
        experiment = build(cfg, trainer_cfg, process.is_main)
        shown = (getattr(experiment.component, "summary_metrics", None), getattr(experiment.component, "test_note", ""))
        resume_run_id = resume_point(cfg.tracking, trainer_cfg)
        with run_ends_cleanly(experiment, phases):
            with phases.deferred():  # a signal waits until the run exists, then ends it
                experiment.tracker = start_tracking(experiment, resume_run_id)
            summary = train_and_test(experiment, phases)
            summary["phase_seconds"] = {name: round(s, 1) for name, s in phases.timings().items()}
            # Where the run's time went, comparable across runs.
            experiment.tracker.log_final_metrics({f"phase_s/{name.replace(' ', '_')}": s
                                                  for name, s in summary["phase_seconds"].items()})
            phases.enter(ENDING)
            with phases.deferred():  # the run ends FINISHED first: a signal must not leave it RUNNING
                experiment.tracker.finish()
    summary["wall_time_s"] = round(time.perf_counter() - started, 1)
    return report(cfg, summary, experiment.tracker, *shown, main_process=process.is_main)
