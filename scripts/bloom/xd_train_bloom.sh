#!/bin/bash
# Bloom, cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/bloom/xd_train_bloom.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/Bloom/vit_b16_c2_ep2_batch4_1ctx_cross_datasets.yaml
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/Bloom/vit_b16_c2_ep2_batch4_1ctx_cross_datasets/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/bloom/xd_train_bloom.sh DATASET SEED" "$@"
run_xd_train Bloom "vit_b16_c2_ep2_batch4_1ctx_cross_datasets" "$1" "$2"
