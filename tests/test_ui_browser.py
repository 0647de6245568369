"""The MLflow UI in a real browser: a small sweep, `mlflow server`, headless Chromium reading the pages."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("ui_screenshots", REPO_ROOT / "scripts" / "ui_screenshots.py")
ui = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ui)

pytestmark = pytest.mark.skipif(ui.chromium() is None, reason="no Chromium browser: apt-get install chromium "
                                                               "(.ci/run installs it)")


def test_a_sweep_reads_in_the_mlflow_ui_as_a_person_sees_it(workdir, tiny_bert_dir, tmp_path):
    ui.fill_store(workdir, [f"component.model={tiny_bert_dir}", "data.max_docs=16", "trainer.epochs=1"])
    experiment_id, parent_id, child_id = ui.sweep_runs(workdir)
    with ui.ui_server(workdir, tmp_path / "server.log") as url:
        pages = ui.pages(url, experiment_id, parent_id, child_id)
        runs = ui.page_text(pages["runs"])
        assert "Training runs" in runs and "sweep-" in runs and "5 matching runs" in runs, runs[:2000]
        child = ui.page_text(pages["child_run"])
        for name in ("trainer.lr", "trainer.seed", "eval_f1", "test_f1", "component._target_"):
            assert name in child, (name, child[:3000])
        artifacts = ui.page_text(pages["child_artifacts"])
        for name in ("plots", "analysis", "best_checkpoint", "config.yaml", "history.json"):
            assert name in artifacts, (name, artifacts[:2000])
        parent = ui.page_text(pages["sweep_parent_artifacts"])
        assert "plots" in parent and "sweep_summary.json" in parent, parent[:2000]
        shots = {name: ui.screenshot(pages[name], tmp_path / f"{name}.png")
                 for name in ("runs", "child_learning_curves", "child_errors", "sweep_parent_plots")}
    # A rendered page, not a blank one: PNGs of a blank 1600x1000 page are a few kB.
    assert all(path.stat().st_size > 30_000 for path in shots.values()), {k: p.stat().st_size for k, p in shots.items()}
