"""medkit_exp: train medical NLP components with experiment tracking at the centre.

Importing the package is cheap on purpose: torch, transformers and mlflow are imported
only by the modules that need them, so that `python -m medkit_exp --help` stays fast.
"""

__version__ = "0.1.0"
