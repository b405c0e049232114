#!/bin/bash
# PromptSRC over BMIP, cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/promptsrc-bmip/xd_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC_BMIP/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/PromptSRC_BMIP/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc-bmip/xd_train.sh DATASET SEED" "$@"
run_xd_train PromptSRC_BMIP "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets" "$1" "$2"
