#!/bin/bash
# PromptSRC over Bloom, base-to-novel step 2: evaluate the step-1 model on the novel classes.
#
# Usage: bash scripts/promptsrc-bloom/base2new_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx.yaml
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (default new), LOADEP (default 20),
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc-bloom/base2new_test.sh DATASET SEED" "$@"
run_base2new_test PromptSRC_Bloom "vit_b16_c2_ep20_batch4_2ctx" "$1" "$2" "${LOADEP:-20}" "scripts/promptsrc-bloom/base2new_train.sh"
