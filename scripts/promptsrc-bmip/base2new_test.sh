#!/bin/bash
# PromptSRC over BMIP, base-to-novel step 2: evaluate the step-1 model on the novel classes.
#
# Usage: bash scripts/promptsrc-bmip/base2new_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC_BMIP/vit_bitp_ctx4_ep20TT_adam_PromptSRC.yaml
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/PromptSRC_BMIP/vit_bitp_ctx4_ep20TT_adam_PromptSRC/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/PromptSRC_BMIP/vit_bitp_ctx4_ep20TT_adam_PromptSRC/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (default new), LOADEP (default 20),
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc-bmip/base2new_test.sh DATASET SEED" "$@"
run_base2new_test PromptSRC_BMIP "vit_bitp_ctx4_ep20TT_adam_PromptSRC" "$1" "$2" "${LOADEP:-20}" "scripts/promptsrc-bmip/base2new_train.sh"
