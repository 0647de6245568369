"""Hydra's handle on medkit_exp's Optuna sweeper (`hydra/sweeper=optuna`).

Hydra only instantiates sweepers found under the ``hydra_plugins`` namespace package, so this
thin class lives here; the work is done by `medkit_exp.sweeps.optuna_search.OptunaSearch`.
Nothing heavy is imported at module level: Hydra imports every plugin at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    """An Optuna search with durable storage, resume and pruning (see `OptunaSearch`)."""

    def __init__(self, sampler: Any, direction: str, storage: str | None, study_name: str | None, n_trials: int,
                 n_jobs: int, pruner: str = "none", pruner_options: Any = None, params: Any = None) -> None:
        from medkit_exp.sweeps.optuna_search import OptunaSearch

        self.search = OptunaSearch(sampler, direction, storage, study_name, n_trials, n_jobs, pruner,
                                   pruner_options, params)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: Sequence[str]) -> Any:
        return self.search.sweep(arguments)
