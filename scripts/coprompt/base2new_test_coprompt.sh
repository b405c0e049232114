#!/bin/bash
# CoPrompt (over MaPLe, the official method), base-to-novel step 2: evaluate the step-1 model on the
# novel classes. Name and arguments as in ShuvenduRoy/CoPrompt, with EXP_NAME and LOADEP optional.
#
# Usage: bash scripts/coprompt/base2new_test_coprompt.sh DATASET SEED [EXP_NAME [LOADEP]]
#   DATASET   name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED      one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
#   EXP_NAME  the training run's experiment name (see base2new_train_coprompt.sh); "" for none
#   LOADEP    epoch of the checkpoint to evaluate (the LOADEP variable works too); omitted: the last
#             epoch the training ran, 5 on food101 (its per-dataset settings) and 8 elsewhere, the
#             values of the official README
# Config: configs/trainers/CoPrompt/coprompt.yaml
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/CoPrompt/coprompt/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/CoPrompt/coprompt/seed${SEED}
#   (both under ${OUTPUT}/${EXP_NAME}/ with an EXP_NAME; skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (default new), LOADEP, PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 4 "bash scripts/coprompt/base2new_test_coprompt.sh DATASET SEED [EXP_NAME [LOADEP]]" "$@"
use_experiment_name "${3:-}"
load_epoch=${4:-${LOADEP:-$(coprompt_epochs "$1")}}
run_base2new_test CoPrompt "coprompt" "$1" "$2" "$load_epoch" "scripts/coprompt/base2new_train_coprompt.sh" ${3:+"$3"}
