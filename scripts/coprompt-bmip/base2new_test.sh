#!/bin/bash
# CoPrompt over BMIP, base-to-novel step 2: evaluate the step-1 model on the novel classes.
#
# Usage: bash scripts/coprompt-bmip/base2new_test.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoPrompt_BMIP/vit_b16_c2_ep8_batch4_2ctx_randaug.yaml
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/CoPrompt_BMIP/vit_b16_c2_ep8_batch4_2ctx_randaug/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/CoPrompt_BMIP/vit_b16_c2_ep8_batch4_2ctx_randaug/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (default new), LOADEP (default: 5 on
#   food101, which CoPrompt's per-dataset settings train for 5 epochs; 8 elsewhere),
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/coprompt-bmip/base2new_test.sh DATASET SEED" "$@"
run_base2new_test CoPrompt_BMIP "vit_b16_c2_ep8_batch4_2ctx_randaug" "$1" "$2" "${LOADEP:-$(coprompt_epochs "$1")}" "scripts/coprompt-bmip/base2new_train.sh"
