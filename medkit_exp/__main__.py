"""`python -m medkit_exp [overrides]`: compose the config with Hydra, then run the app.

Only Hydra and the config schema are imported here; torch, transformers and mlflow are
imported by the app once a job really runs, so `--help` and `--cfg job` stay fast.
"""

from __future__ import annotations

import sys

import hydra
import hydra._internal.utils as hydra_utils
from omegaconf import DictConfig

from medkit_exp.errors import is_user_error, one_line
from medkit_exp.schema import register_configs

register_configs()


def _report(func):
    """Replacement for Hydra's `run_and_report`: user errors become one line and exit 2.

    Hydra prints config errors over several lines with hints about HYDRA_FULL_ERROR; users
    asked for one line naming the key. Genuine bugs keep their traceback.
    """
    try:
        return func()
    except KeyboardInterrupt:
        print("medkit_exp: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - this is the top-level reporter
        if is_user_error(exc):
            print(f"medkit_exp: error: {one_line(exc)}", file=sys.stderr)
            sys.exit(2)
        raise


@hydra.main(version_base="1.3", config_path="pkg://medkit_exp.conf", config_name="config")
def _run(cfg: DictConfig) -> float | None:
    from medkit_exp.app import run

    try:
        return run(cfg)
    except Exception as exc:
        # Report user errors here, inside the job: past this point Hydra would first print
        # "Error executing job with overrides: [...]", a second line users did not ask for.
        if is_user_error(exc):
            print(f"medkit_exp: error: {one_line(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(2) from exc
        raise


def main() -> None:
    hydra_utils.run_and_report = _report
    _run()


if __name__ == "__main__":
    main()
