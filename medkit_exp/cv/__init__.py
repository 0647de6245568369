"""Cross-validation over train + dev: deterministic, patient-grouped, label-stratified folds
(`medkit_exp.cv.folds`), applied to a run's splits by the ``cv`` settings."""

from medkit_exp.cv.folds import FoldInfo, assign_folds, group_values, split_for_fold, strata_of, stratum

__all__ = ["FoldInfo", "assign_folds", "group_values", "split_for_fold", "strata_of", "stratum"]
