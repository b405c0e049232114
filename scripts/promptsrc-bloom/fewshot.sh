#!/bin/bash
# PromptSRC over Bloom, few-shot (CoOp's protocol): train on ALL classes with SHOTS images each, test on all classes.
#
# Usage: bash scripts/promptsrc-bloom/fewshot.sh DATASET SEED SHOTS
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
#   SHOTS    training images per class: 1, 2, 4, 8 or 16
# Config: configs/trainers/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx.yaml (its base-to-novel config)
# Output: ${OUTPUT}/fewshot/${DATASET}/shots_${SHOTS}/PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 3 3 "bash scripts/promptsrc-bloom/fewshot.sh DATASET SEED SHOTS" "$@"
run_fewshot PromptSRC_Bloom "vit_b16_c2_ep20_batch4_2ctx" "$1" "$2" "$3"
