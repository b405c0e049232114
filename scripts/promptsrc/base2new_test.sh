#!/bin/bash
# PromptSRC (over IVLP, the official method), base-to-novel step 2: evaluate the step-1 model on the
# novel classes. Name and arguments as in muzairkhattak/PromptSRC.
#
# Usage: bash scripts/promptsrc/base2new_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml
# Checkpoint: epoch 20, the last one, which holds the Gaussian-aggregated prompts (as the official LOADEP).
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (default new), LOADEP (default 20), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc/base2new_test.sh DATASET SEED" "$@"
run_base2new_test PromptSRC "vit_b16_c2_ep20_batch4_4+4ctx" "$1" "$2" "${LOADEP:-20}" "scripts/promptsrc/base2new_train.sh"
