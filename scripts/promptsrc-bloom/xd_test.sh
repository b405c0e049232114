#!/bin/bash
# PromptSRC over Bloom, cross-dataset step 2: evaluate the source-dataset model on another dataset.
#
# Usage: bash scripts/promptsrc-bloom/xd_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx.yaml
#   (its base-to-novel config: PromptSRC_Bloom has no cross-dataset config of its own)
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx/seed${SEED},
#   model from ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), LOADEP (default 20),
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc-bloom/xd_test.sh DATASET SEED" "$@"
run_xd_test PromptSRC_Bloom "vit_b16_c2_ep20_batch4_2ctx" "$1" "$2" "${LOADEP:-20}" "bash scripts/promptsrc-bloom/xd_train.sh ${SOURCE_DATASET:-imagenet} $2"
