#!/bin/bash
# BMIP, cross-dataset step 2: evaluate the source-dataset model on another dataset.
#
# Usage: bash scripts/bmip/xd_test.sh DATASET SEED [DEVICE [CFG [LOAD_EPOCH]]]
#   DATASET     name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED        one seed, e.g. 1 (the paper averages seeds 1, 2 and 3)
#   DEVICE      passed as train.py --device (cpu, cuda, cuda:1, ...); "" or omitted: train.py picks it
#   CFG         name of configs/trainers/BMIP/CFG.yaml, the one used for training
#               (default BMIP_ctx2_dp9_lr2_cross_datasets)
#   LOAD_EPOCH  evaluate model.pth.tar-LOAD_EPOCH (as the official script's 5th argument; LOADEP works too);
#               omitted: model-best.pth.tar (train.py --best), the model the config's best_val keeps
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/BMIP/${CFG}/seed${SEED},
#   model from ${OUTPUT}/xd/train/${SOURCE_DATASET}/shots_${SHOTS}/BMIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json). This is the layout of every other method here;
#   the official script writes to output/evaluation/BMIP/${CFG}/${DATASET}/seed${SEED}.
# Environment: DATA (required), OUTPUT, SOURCE_DATASET (default imagenet), SHOTS (default 16), LOADEP,
#   PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 5 "bash scripts/bmip/xd_test.sh DATASET SEED [DEVICE [CFG [LOAD_EPOCH]]]" "$@"
DEFAULT_CFG=BMIP_ctx2_dp9_lr2_cross_datasets
CFG=${4:-$DEFAULT_CFG}
use_device "${3:-}"
# 10 (the config's last epoch) only fills --load-epoch under --best.
load_best_unless_epoch_given 10 "${5:-${LOADEP:-}}"
train_hint="bash scripts/bmip/xd_train.sh ${SOURCE_DATASET:-imagenet} $2"
if [ -n "${3:-}" ] || [ "$CFG" != "$DEFAULT_CFG" ]; then
    train_hint+=" ${3:-\"\"} $CFG"
fi
run_xd_test BMIP "$CFG" "$1" "$2" "$LOAD_EPOCH" "$train_hint"
