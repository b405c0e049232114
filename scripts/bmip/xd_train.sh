#!/bin/bash
# BMIP, cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/bmip/xd_train.sh DATASET SEED [DEVICE [CFG]]
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the paper
#   SEED     one seed, e.g. 1 (the paper averages seeds 1, 2 and 3)
#   DEVICE   passed as train.py --device (cpu, cuda, cuda:1, ...); "" or omitted: train.py picks it
#   CFG      name of configs/trainers/BMIP/CFG.yaml (default BMIP_ctx2_dp9_lr2_cross_datasets)
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/BMIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json; the official script skips any existing dir).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 4 "bash scripts/bmip/xd_train.sh DATASET SEED [DEVICE [CFG]]" "$@"
use_device "${3:-}"
run_xd_train BMIP "${4:-BMIP_ctx2_dp9_lr2_cross_datasets}" "$1" "$2"
