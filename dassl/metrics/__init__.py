"""Metrics computed on model outputs."""
from .accuracy import compute_accuracy
