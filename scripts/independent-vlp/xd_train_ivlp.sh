#!/bin/bash
# IVLP (independent vision-language prompting), cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/independent-vlp/xd_train_ivlp.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/IVLP/vit_b16_c2_ep5_batch4_2+2ctx/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/independent-vlp/xd_train_ivlp.sh DATASET SEED" "$@"
run_xd_train IVLP "vit_b16_c2_ep5_batch4_2+2ctx" "$1" "$2"
