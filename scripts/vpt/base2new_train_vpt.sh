#!/bin/bash
# Deep VPT, base-to-novel step 1: train on the base half of the classes, SHOTS images each.
#
# Usage: bash scripts/vpt/base2new_train_vpt.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml
# Output: ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/VPT/vit_b16_c2_ep5_batch4_4/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/vpt/base2new_train_vpt.sh DATASET SEED" "$@"
run_base2new_train VPT "vit_b16_c2_ep5_batch4_4" "$1" "$2"
