#!/bin/bash
# BMIP, base-to-novel step 1: train on the base half of the classes, SHOTS images each.
#
# Usage: bash scripts/bmip/base2new_train_bmip.sh DATASET SEED [DEVICE [CFG]]
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the paper averages seeds 1, 2 and 3)
#   DEVICE   passed as train.py --device (cpu, cuda, cuda:1, ...); "" or omitted: train.py picks it
#   CFG      name of configs/trainers/BMIP/CFG.yaml (default BMIP_ctx2_dp9_lr2, the official config;
#            ablations: BMIP_ctx2_dp9_lr2_{addition,attention,joint,paper})
# Output: ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/BMIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json). This is the layout of every other method here,
#   so that parse_test_res.py builds one table across methods; the official BMIP script writes to
#   ./output/base2new/train_base/${CFG}/${DATASET}/seed${SEED} and reruns existing dirs.
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 4 "bash scripts/bmip/base2new_train_bmip.sh DATASET SEED [DEVICE [CFG]]" "$@"
use_device "${3:-}"
run_base2new_train BMIP "${4:-BMIP_ctx2_dp9_lr2}" "$1" "$2"
