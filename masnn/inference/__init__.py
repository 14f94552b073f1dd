"""Inference helpers: the dense fast path (:func:`fast`) and event-driven sparse inference
(:func:`sparse`)."""

from masnn.inference.fast import FastInference, fast, fold_all_bn, fold_bn
from masnn.inference.sparse import SparseInference, calibrate, sparse

__all__ = [
    "FastInference",
    "SparseInference",
    "calibrate",
    "fast",
    "fold_all_bn",
    "fold_bn",
    "sparse",
]
