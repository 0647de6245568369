"""Analyses of stored predictions: annotation-error suspects ranked from out-of-fold predictions
(`medkit_exp.analysis.suspects`, with cleanlab)."""
