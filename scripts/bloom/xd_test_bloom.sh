#!/bin/bash
# Bloom, cross-dataset step 2: evaluate the source-dataset model on another dataset.
#
# Usage: bash scripts/bloom/xd_test_bloom.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/Bloom/vit_b16_c2_ep2_batch4_1ctx_cross_datasets.yaml
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/Bloom/vit_b16_c2_ep2_batch4_1ctx_cross_datasets/seed${SEED},
#   model from ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/Bloom/vit_b16_c2_ep2_batch4_1ctx_cross_datasets/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), LOADEP (default 2), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/bloom/xd_test_bloom.sh DATASET SEED" "$@"
run_xd_test Bloom "vit_b16_c2_ep2_batch4_1ctx_cross_datasets" "$1" "$2" "${LOADEP:-2}" "bash scripts/bloom/xd_train_bloom.sh ${SOURCE_DATASET:-imagenet} $2"
