#!/bin/bash
# CoCoOp, cross-dataset step 2: evaluate the source-dataset model on another dataset.
#
# Usage: bash scripts/cocoop/xd_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed${SEED},
#   model from ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), LOADEP (default 10), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/cocoop/xd_test.sh DATASET SEED" "$@"
run_xd_test CoCoOp "vit_b16_c4_ep10_batch1_ctxv1" "$1" "$2" "${LOADEP:-10}" "bash scripts/cocoop/xd_train.sh $2"
