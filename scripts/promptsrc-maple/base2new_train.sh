#!/bin/bash
# PromptSRC over MaPLe, base-to-novel step 1: train on the base half of the classes, SHOTS images each.
#
# Usage: bash scripts/promptsrc-maple/base2new_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC_MaPLe/vit_b16_c2_ep20_batch4_2ctx.yaml
# Output: ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/PromptSRC_MaPLe/vit_b16_c2_ep20_batch4_2ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc-maple/base2new_train.sh DATASET SEED" "$@"
run_base2new_train PromptSRC_MaPLe "vit_b16_c2_ep20_batch4_2ctx" "$1" "$2"
