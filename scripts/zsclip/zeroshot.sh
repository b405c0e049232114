#!/bin/bash
# Zero-shot CLIP (hand-crafted prompts, nothing trained) on one dataset.
#
# Usage: bash scripts/zsclip/zeroshot.sh DATASET CFG
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   CFG      name of configs/trainers/CoOp/CFG.yaml that picks the backbone: rn50, rn101, vit_b32 or vit_b16
# Environment: DATA (required), OUTPUT, PYTHON, EXTRA_OPTS (see scripts/common.sh).
# Skipped when the output dir already holds results.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/zsclip/zeroshot.sh DATASET CFG" "$@"
DATASET=$1
CFG=$2
TRAINER=ZeroshotCLIP

require_data
resolve_output_root
enter_repo_root
require_config "configs/datasets/${DATASET}.yaml" "Dataset"
require_config "configs/trainers/CoOp/${CFG}.yaml" "Trainer"

DIR=${OUTPUT}/${TRAINER}/${CFG}/${DATASET}
train_args \
    --root "$DATA" \
    --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/CoOp/${CFG}.yaml" \
    --output-dir "$DIR" \
    --eval-only
if finished_run "$DIR"; then
    exit 0
fi
run_train_args
