#!/bin/bash
# CoOp, cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/coop/xd_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoOp/vit_b16_ep50.yaml (CoOp trains ImageNet for 50 epochs) with the trainer
#   defaults (16 context tokens, shared, class token at the end).
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/CoOp/vit_b16_ep50/seed${SEED}
#   (skipped when it already holds results.json). scripts/coop/main.sh keeps CoOp's own layout instead.
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/coop/xd_train.sh DATASET SEED" "$@"
run_xd_train CoOp "vit_b16_ep50" "$1" "$2"
