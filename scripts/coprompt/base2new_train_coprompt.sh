#!/bin/bash
# CoPrompt (over MaPLe, the official method), base-to-novel step 1: train on the base half of the
# classes, SHOTS images each. Name and arguments as in ShuvenduRoy/CoPrompt, with EXP_NAME optional.
#
# Usage: bash scripts/coprompt/base2new_train_coprompt.sh DATASET SEED [EXP_NAME]
#   DATASET   name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED      one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
#   EXP_NAME  experiment name: the runs go to a tree of their own, ${OUTPUT}/${EXP_NAME}/base2new/...,
#             which parse_test_res.py --table base2new ${OUTPUT}/${EXP_NAME} reads; omitted, "" or
#             "base2new" (the official script's suggestion): the tree every method shares, ${OUTPUT}/base2new/...
# Config: configs/trainers/CoPrompt/coprompt.yaml (8 epochs; the trainer's per-dataset settings,
#   TRAINER.CoPrompt.DATASET_SETTINGS, set N_CTX, PROMPT_DEPTH, W and Food101's 5 epochs, as the official code)
# Output: ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/CoPrompt/coprompt/seed${SEED}
#   (skipped when it already holds results.json; the official script writes to
#   output/${EXP_NAME}/train_base/... and reruns an existing dir).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 3 "bash scripts/coprompt/base2new_train_coprompt.sh DATASET SEED [EXP_NAME]" "$@"
use_experiment_name "${3:-}"
run_base2new_train CoPrompt "coprompt" "$1" "$2"
