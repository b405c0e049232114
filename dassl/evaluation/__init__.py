"""Evaluators that turn model outputs into reported metrics."""
from .evaluator import (
    EVALUATOR_REGISTRY,
    Classification,
    EvaluatorBase,
    build_evaluator,
    harmonic_mean,
    macro_f1_score,
    openworld_accuracies,
)
