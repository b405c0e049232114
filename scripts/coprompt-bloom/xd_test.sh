#!/bin/bash
# CoPrompt over Bloom, cross-dataset step 2: evaluate the source-dataset model on another dataset.
#
# Usage: bash scripts/coprompt-bloom/xd_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoPrompt_Bloom/vit_b16_c2_ep8_batch4_2ctx_randaug.yaml
#   (its base-to-novel config: CoPrompt_Bloom has no cross-dataset config of its own)
# Opts: TRAINER.CoPrompt.DATASET_SETTINGS False (the config's values on every dataset, so that
#   source and targets share one prompt shape; see COPROMPT_XD_OPTS in scripts/common.sh).
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/CoPrompt_Bloom/vit_b16_c2_ep8_batch4_2ctx_randaug/seed${SEED},
#   model from ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/CoPrompt_Bloom/vit_b16_c2_ep8_batch4_2ctx_randaug/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), LOADEP (default 8),
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/coprompt-bloom/xd_test.sh DATASET SEED" "$@"
run_xd_test CoPrompt_Bloom "vit_b16_c2_ep8_batch4_2ctx_randaug" "$1" "$2" "${LOADEP:-8}" "bash scripts/coprompt-bloom/xd_train.sh ${SOURCE_DATASET:-imagenet} $2" "${COPROMPT_XD_OPTS[@]}"
