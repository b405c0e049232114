#!/bin/bash
# CoPrompt (over MaPLe), cross-dataset step 2: evaluate the source-dataset model on another dataset.
# Ours: the CoPrompt repository has base-to-novel scripts only.
#
# Usage: bash scripts/coprompt/xd_test_coprompt.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoPrompt/coprompt.yaml with TRAINER.CoPrompt.DATASET_SETTINGS False, as the
#   training run (see xd_train_coprompt.sh)
# Checkpoint: epoch 8, the config's last.
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/CoPrompt/coprompt/seed${SEED},
#   model from ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/CoPrompt/coprompt/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), LOADEP (default 8),
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/coprompt/xd_test_coprompt.sh DATASET SEED" "$@"
run_xd_test CoPrompt "coprompt" "$1" "$2" "${LOADEP:-8}" "bash scripts/coprompt/xd_train_coprompt.sh ${SOURCE_DATASET:-imagenet} $2" \
    "${COPROMPT_XD_OPTS[@]}"
