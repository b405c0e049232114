#!/bin/bash
# BMIP, few-shot (CoOp's protocol): train on ALL classes with SHOTS images each, test on all classes.
#
# Usage: bash scripts/bmip/fewshot_bmip.sh DATASET SEED SHOTS [DEVICE [CFG]]
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the paper averages seeds 1, 2 and 3)
#   SHOTS    training images per class: 1, 2, 4, 8 or 16
#   DEVICE   passed as train.py --device (cpu, cuda, cuda:1, ...); "" or omitted: train.py picks it
#   CFG      name of configs/trainers/BMIP/CFG.yaml (default BMIP_ctx2_dp9_lr2)
# Output: ${OUTPUT}/fewshot/${DATASET}/shots_${SHOTS}/BMIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 3 5 "bash scripts/bmip/fewshot_bmip.sh DATASET SEED SHOTS [DEVICE [CFG]]" "$@"
use_device "${4:-}"
run_fewshot BMIP "${5:-BMIP_ctx2_dp9_lr2}" "$1" "$2" "$3"
