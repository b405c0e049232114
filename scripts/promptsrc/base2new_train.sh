#!/bin/bash
# PromptSRC (over IVLP, the official method), base-to-novel step 1: train on the base half of the
# classes, SHOTS images each. Name and arguments as in muzairkhattak/PromptSRC.
#
# Usage: bash scripts/promptsrc/base2new_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml
# Output: ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed${SEED}
#   (skipped when it already holds results.json; the official script reruns an existing dir).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc/base2new_train.sh DATASET SEED" "$@"
run_base2new_train PromptSRC "vit_b16_c2_ep20_batch4_4+4ctx" "$1" "$2"
