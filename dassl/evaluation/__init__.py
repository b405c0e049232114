"""Evaluators that turn model outputs into reported metrics."""
from .evaluator import (
    EVALUATOR_REGISTRY,
    Classification,
    EvaluatorBase,
    build_evaluator,
    macro_f1_score,
)
