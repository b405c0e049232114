#!/bin/bash
# Linear-probe CLIP (CoOp's lpclip protocol), few-shot: logistic regression on the frozen image
# features of SHOTS images per class of ALL classes, C searched on the few-shot validation split.
#
# Usage: bash scripts/linear-probe/fewshot.sh DATASET SEED SHOTS [CFG]
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed (the few-shot images are the other methods' for this seed)
#   SHOTS    images per class, e.g. 16
# Config: configs/trainers/LinearProbeCLIP/vit_b16.yaml (CFG, or the CFG variable, overrides it)
# Output: ${OUTPUT}/fewshot/${DATASET}/shots_${SHOTS}/LinearProbeCLIP/vit_b16/seed${SEED}
#   (skipped when it already holds results.json).
# A linear probe has a classifier only for the classes it was fitted on, so it takes part in the
# few-shot protocol (all classes) only: base-to-novel and cross-dataset tests are refused by the trainer.
# Environment: DATA (required), OUTPUT, PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 3 4 "bash scripts/linear-probe/fewshot.sh DATASET SEED SHOTS [CFG]" "$@"
run_fewshot LinearProbeCLIP "${4:-vit_b16}" "$1" "$2" "$3"
