#!/bin/bash
# IVLP (independent vision-language prompting), cross-dataset step 2: evaluate the source-dataset model on another dataset.
#
# Usage: bash scripts/independent-vlp/xd_test_ivlp.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/IVLP/vit_b16_c2_ep5_batch4_2+2ctx/seed${SEED},
#   model from ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/IVLP/vit_b16_c2_ep5_batch4_2+2ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), LOADEP (default 5), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
# LOADEP defaults to 5, the last epoch of the config: the official script loads epoch 2, which
# this config never saves (only the last epoch is checkpointed unless TRAIN.CHECKPOINT_FREQ is set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/independent-vlp/xd_test_ivlp.sh DATASET SEED" "$@"
run_xd_test IVLP "vit_b16_c2_ep5_batch4_2+2ctx" "$1" "$2" "${LOADEP:-5}" "bash scripts/independent-vlp/xd_train_ivlp.sh ${SOURCE_DATASET:-imagenet} $2"
