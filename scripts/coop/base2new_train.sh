#!/bin/bash
# CoOp, base-to-novel step 1: train on the base half of the classes, SHOTS images each.
#
# Usage: bash scripts/coop/base2new_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoOp/vit_b16_ep100.yaml with the trainer defaults (16 context tokens, shared,
#   class token at the end), the CoOp base-to-novel setting of the BMIP repository.
# Output: ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/CoOp/vit_b16_ep100/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/coop/base2new_train.sh DATASET SEED" "$@"
run_base2new_train CoOp "vit_b16_ep100" "$1" "$2"
