"""Cross-validation over train + dev: deterministic, patient-grouped, label-stratified folds
(`medkit_exp.cv.folds`), applied to a run's splits by the ``cv`` settings."""
