"""Sweeps: a Hydra multirun grouped under one MLflow parent run, resumed when run again, and
an Optuna search as a Hydra sweeper.

- `medkit_exp.sweeps.callback`: the Hydra callback, one MLflow parent run per multirun, the
  best job and the configurations ranked at the end;
- `medkit_exp.sweeps.jobs`: what a sweep's jobs and the sweep share (the parent run's
  environment variable, a failed job's marker, the objective as a run logged it);
- `medkit_exp.sweeps.resume`: an interrupted grid sweep resumes, each job skips, resumes or
  re-runs itself;
- `medkit_exp.sweeps.summary`: configurations ranked by their mean objective over seeds;
- `medkit_exp.sweeps.search_space`, `medkit_exp.sweeps.optuna_search`,
  `medkit_exp.sweeps.optuna_trial`: the Optuna sweeper's space, its search, and a job's side
  of it (reporting epochs, pruning).

This package may import `medkit_exp.tracking` and `medkit_exp.training`; the app imports it.
Nothing is imported here: Hydra imports the callback module for every run.
"""
