"""Look at runs in the MLflow UI as a person would: a small sweep, `mlflow server`, headless Chromium.

    python scripts/ui_screenshots.py [--out docs] [--model HF_FOLDER] [--epochs 3]

Fills a fresh store with a sweep of the default experiment (``trainer.lr`` x 2, ``trainer.seed``
x 2, demo corpus), serves it on a free local port, and saves screenshots of what a person
opens: the experiment's training runs, a child run (its params and metrics), its plots, its
error-analysis page, and the sweep parent's plots. README and docs/tracking.md show those from
``docs/``. Needs Debian's ``chromium`` (``apt-get install chromium``). The test suite uses the
same functions (`tests/test_ui_browser.py`) with a tiny model.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # for the tests' helper for local servers (see ui_server)


def chromium() -> str | None:
    """The Chromium binary, or None where none is installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _browse(url: str, *options: str, budget_ms: int = 25000, timeout_s: int = 120) -> str:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1600,1000", f"--virtual-time-budget={budget_ms}", *options, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {done.stderr[-1500:]}")
    return done.stdout


def page_text(url: str) -> str:
    """The text a person sees on ``url`` once the page has rendered (scripts and styles left out)."""
    dom = _browse(url, "--dump-dom")
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def screenshot(url: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _browse(url, f"--screenshot={path}")
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return path


def fill_store(workdir: Path, overrides: list[str]) -> None:
    """A sweep of 2 learning rates x 2 seeds, tracked in ``workdir/mlruns``."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "medkit_exp", "-m", "trainer.lr=3e-4,1e-3", "trainer.seed=0,1",
               "callbacks.progress_bars=false", "threads=1", "tracking.log_model=false", *overrides]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the sweep failed: {done.stderr[-3000:]}")


def ui_server(workdir: Path, log_path: Path):
    """`mlflow server` on the store of ``workdir`` (a context manager yielding its base URL)."""
    from contextlib import contextmanager

    from support.servers import free_port, serving

    @contextmanager
    def running():
        port = free_port()
        store = workdir / "mlruns"
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                   "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1"]
        url = f"http://127.0.0.1:{port}"
        with serving(command, f"{url}/health", log_path, env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")):
            yield url

    return running()


def sweep_runs(workdir: Path) -> tuple[str, str, str]:
    """``(experiment id, parent run id, id of a child run)`` of the sweep in ``workdir``'s store."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("medkit_exp")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    return experiment.experiment_id, parent.info.run_id, child.info.run_id


def pages(url: str, experiment_id: str, parent_id: str, child_id: str) -> dict[str, str]:
    """What a person opens, by name: the runs table, a child run, its plots and errors, the parent's plots."""
    base = f"{url}/#/experiments/{experiment_id}"
    return {
        "runs": f"{base}/runs",
        "child_run": f"{base}/runs/{child_id}",
        "child_learning_curves": f"{base}/runs/{child_id}/artifacts/plots/learning_curves.png",
        "child_errors": f"{base}/runs/{child_id}/artifacts/analysis/errors.html",
        "child_artifacts": f"{base}/runs/{child_id}/artifacts",
        "sweep_parent_plots": f"{base}/runs/{parent_id}/artifacts/plots/objective_by_hyperparameter.png",
        "sweep_parent_artifacts": f"{base}/runs/{parent_id}/artifacts",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs"))
    parser.add_argument("--model", default=None, help="component.model (default: the packaged MiniLM)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-docs", type=int, default=120)
    args = parser.parse_args()
    if chromium() is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    overrides = [f"trainer.epochs={args.epochs}", f"data.max_docs={args.max_docs}"]
    overrides += [f"component.model={args.model}"] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        fill_store(workdir, overrides)
        ids = sweep_runs(workdir)
        with ui_server(workdir, workdir / "server.log") as url:
            for name, page in pages(url, *ids).items():
                if name.endswith("artifacts"):
                    continue
                print(screenshot(page, Path(args.out) / f"ui_{name}.png"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
