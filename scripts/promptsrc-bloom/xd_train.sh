#!/bin/bash
# PromptSRC over Bloom, cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/promptsrc-bloom/xd_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx.yaml
#   (its base-to-novel config: PromptSRC_Bloom has no cross-dataset config of its own)
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc-bloom/xd_train.sh DATASET SEED" "$@"
run_xd_train PromptSRC_Bloom "vit_b16_c2_ep20_batch4_2ctx" "$1" "$2"
