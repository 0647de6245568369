"""A small non-NER component trained with medkit_exp: a regressor over numeric features.

Everything the app needs from a user's code is here: a `TrainableComponent` (`MLPRegressor`),
a data factory (`synthetic_splits`) and a `MetricsComputer` (`RegressionMetrics`). The
config nodes in ``../my_conf`` name them with ``_target_``.
"""

from my_regressor.component import MLPRegressor
from my_regressor.data import synthetic_splits
from my_regressor.metrics import RegressionMetrics

__all__ = ["MLPRegressor", "RegressionMetrics", "synthetic_splits"]
