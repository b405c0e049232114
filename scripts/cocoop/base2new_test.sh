#!/bin/bash
# CoCoOp, base-to-novel step 2: evaluate the step-1 model on the novel classes.
#
# Usage: bash scripts/cocoop/base2new_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (default new), LOADEP (default 10), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/cocoop/base2new_test.sh DATASET SEED" "$@"
run_base2new_test CoCoOp "vit_b16_c4_ep10_batch1_ctxv1" "$1" "$2" "${LOADEP:-10}" "scripts/cocoop/base2new_train.sh"
