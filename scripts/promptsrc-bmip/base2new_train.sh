#!/bin/bash
# PromptSRC over BMIP, base-to-novel step 1: train on the base half of the classes, SHOTS images each.
#
# Usage: bash scripts/promptsrc-bmip/base2new_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC_BMIP/vit_bitp_ctx4_ep20TT_adam_PromptSRC.yaml
# Output: ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/PromptSRC_BMIP/vit_bitp_ctx4_ep20TT_adam_PromptSRC/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc-bmip/base2new_train.sh DATASET SEED" "$@"
run_base2new_train PromptSRC_BMIP "vit_bitp_ctx4_ep20TT_adam_PromptSRC" "$1" "$2"
