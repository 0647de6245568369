"""`python -m medkit_exp [overrides]`: compose the config with Hydra, then run the app.

Only Hydra and the config schema are imported here; torch, transformers and mlflow are
imported by the app once a job really runs, so `--help` and `--cfg job` stay fast.
"""

from __future__ import annotations

import sys

import hydra
import hydra._internal.utils as hydra_utils
from omegaconf import DictConfig

from medkit_exp.app.schema import register_configs
from medkit_exp.errors import is_user_error, one_line

register_configs()


def _register_sweeper() -> None:
    """Make the project's Optuna sweeper known to Hydra. Hydra finds plugins by walking the
    ``hydra_plugins`` namespace package, which misses it under an editable install."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.medkit_exp_optuna import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)


_register_sweeper()


def _report(func):
    """Replacement for Hydra's `run_and_report`: user errors become one line and exit 2.

    Hydra prints config errors over several lines with hints about HYDRA_FULL_ERROR; users
    asked for one line naming the key. Genuine bugs keep their traceback.
    """
    try:
        return func()
    except (KeyboardInterrupt, SystemExit) as exc:
        _exit_if_stopped(exc)
        raise
    except Exception as exc:
        if is_user_error(exc):
            print(f"medkit_exp: error: {one_line(exc)}", file=sys.stderr)
            sys.exit(2)
        raise


def _exit_if_stopped(exc: BaseException) -> None:
    """A stop signal (SIGINT, SIGTERM, SIGHUP) ended the command: one line unless the run already
    printed it, a sweep's parent run ended KILLED, exit 128 + the signal's number."""
    from medkit_exp.training.phases import signal_name, signal_of, was_reported

    signum = signal_of(exc)
    if signum is None:
        return  # a plain exit (2 for a user error...)
    from medkit_exp.sweeps.callback import STOPPED_BY_SIGNAL

    STOPPED_BY_SIGNAL.append(signal_name(signum))
    if not was_reported(exc):
        print(f"medkit_exp: {signal_name(signum)} received: stopped", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def _stop_on_signals() -> None:
    """Outside a run too (Hydra starting, between sweep jobs), SIGTERM and SIGHUP end the command
    as Ctrl-C does, through exceptions: a sweep's parent run is then ended, not left RUNNING. Each
    run installs its own handlers over these (`medkit_exp.training.phases`)."""
    import signal

    from medkit_exp.training.phases import STOP_SIGNALS, stop_exception

    def stop(signum: int, frame: object) -> None:
        raise stop_exception(signum)

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(signum, stop)


@hydra.main(version_base="1.3", config_path="pkg://medkit_exp.conf", config_name="config")
def _run(cfg: DictConfig) -> float | None:
    from medkit_exp.app.run import run

    try:
        return run(cfg)
    except Exception as exc:
        # Report user errors here, inside the job: past this point Hydra would first print
        # "Error executing job with overrides: [...]", a second line users did not ask for.
        job_dir = _sweep_job_dir()
        if job_dir is not None:  # one failed job must not end the sweep: record it, go on
            return _failed_job(exc, job_dir)
        if is_user_error(exc):
            print(f"medkit_exp: error: {one_line(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(2) from exc
        raise


def _sweep_job_dir() -> str | None:
    """The job's folder when this job is part of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return None
    return hydra_cfg.runtime.output_dir if hydra_cfg.mode == RunMode.MULTIRUN else None


def _failed_job(exc: Exception, job_dir: str) -> float:
    """Leave the job's reason in its folder (its MLflow run is already FAILED) and give the sweeper
    NaN, which Optuna records as a failed trial; the CLI exits non-zero once the sweep is over."""
    import traceback

    from medkit_exp.sweeps.jobs import mark_job_failed

    reason = one_line(exc) if is_user_error(exc) else f"{type(exc).__name__}: {exc}".splitlines()[0]
    if not is_user_error(exc):
        traceback.print_exc()  # a bug: its traceback, then the sweep goes on
    print(f"medkit_exp: sweep job failed: {reason}", file=sys.stderr, flush=True)
    mark_job_failed(job_dir, reason)
    return float("nan")


def main() -> None:
    from medkit_exp.app.output_redaction import redact_process_output

    redact_process_output()  # before Hydra parses: its errors echo the overrides, secrets included
    _stop_on_signals()
    hydra_utils.run_and_report = _report
    _run()
    _exit_if_sweep_jobs_failed()


def _exit_if_sweep_jobs_failed() -> None:
    from medkit_exp.sweeps.callback import LAST_SWEEP_FAILURES

    if LAST_SWEEP_FAILURES:
        first_job, first_reason = LAST_SWEEP_FAILURES[0]
        print(f"medkit_exp: error: {len(LAST_SWEEP_FAILURES)} sweep job(s) failed, the others ran (first: "
              f"{first_job}: {first_reason}); each failed job's reason is in its folder's "
              f"medkit_exp_failed.txt and its MLflow run", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
