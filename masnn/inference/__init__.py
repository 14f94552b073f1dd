"""Inference helpers: the fast path (:func:`fast`)."""

from masnn.inference.fast import FastInference, fast, fold_all_bn, fold_bn

__all__ = ["FastInference", "fast", "fold_all_bn", "fold_bn"]
