#!/bin/bash
# CoCoOp, cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/cocoop/xd_train.sh SEED
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml
# Output: ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 1 1 "bash scripts/cocoop/xd_train.sh SEED" "$@"
run_xd_train CoCoOp "vit_b16_c4_ep10_batch1_ctxv1" "${SOURCE_DATASET:-imagenet}" "$1"
