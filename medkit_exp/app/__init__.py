"""The experiment app: one run of `python -m medkit_exp`, in named phases.

- `run`: the run function, a dozen lines calling the phases below in order;
- `validate`: every check of the composed config that needs no torch;
- `build`: the process set up, the data, component, metrics and scheduler built (`nodes` builds
  any config node; `data` wraps what the data node returned);
- `tracker`: the job's MLflow run started, tagged, and its model logged;
- `train_and_test`: the Trainer, the test split, the plots and artifacts;
- `stopping`: what a stop signal or a failure does to the run;
- `report`: the summary printed and the objective returned to a sweeper;
- `resume`, `schema`, `output_redaction`: resuming a run, the config's schema, credentials
  masked in the process output.

Importing this package imports nothing heavy: `python -m medkit_exp --help` stays fast.
"""
