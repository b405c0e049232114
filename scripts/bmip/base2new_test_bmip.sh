#!/bin/bash
# BMIP, base-to-novel step 2: evaluate the step-1 model on the novel classes.
#
# Usage: bash scripts/bmip/base2new_test_bmip.sh DATASET SEED [DEVICE [CFG]]
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the paper averages seeds 1, 2 and 3)
#   DEVICE   passed as train.py --device (cpu, cuda, cuda:1, ...); "" or omitted: train.py picks it
#   CFG      name of configs/trainers/BMIP/CFG.yaml, the one used for training (default BMIP_ctx2_dp9_lr2)
# Checkpoint: model-best.pth.tar (train.py --best, as the official script; the config keeps the best
#   validation epoch, TEST.FINAL_MODEL best_val). With LOADEP set, epoch LOADEP instead (no --best).
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/BMIP/${CFG}/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/BMIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json). This is the layout of every other method here,
#   not the official ./output/base2new/test_${SUB}/${CFG}/${DATASET}/seed${SEED}.
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (new (default), base or all), LOADEP,
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 4 "bash scripts/bmip/base2new_test_bmip.sh DATASET SEED [DEVICE [CFG]]" "$@"
use_device "${3:-}"
# 5 only fills --load-epoch under --best, as in the official script.
load_best_unless_epoch_given 5 "${LOADEP:-}"
run_base2new_test BMIP "${4:-BMIP_ctx2_dp9_lr2}" "$1" "$2" "$LOAD_EPOCH" "scripts/bmip/base2new_train_bmip.sh"
