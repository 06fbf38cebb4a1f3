"""Spark ML stages: Params, Estimator/Model classes and their persistence."""
from __future__ import annotations

from sparkdl.estimators.keras import KerasEstimator, KerasModel

__all__ = ["KerasEstimator", "KerasModel"]
