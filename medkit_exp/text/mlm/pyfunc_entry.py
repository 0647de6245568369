"""Model-from-code entry point of the logged masked language model (see `medkit_exp.text.mlm.fill_mask_model`).

MLflow copies this file into the logged model and runs it when the model is loaded; it is
not meant to be imported otherwise.
"""

from mlflow.models import set_model

from medkit_exp.text.mlm.fill_mask_model import FillMaskModel

set_model(FillMaskModel())
