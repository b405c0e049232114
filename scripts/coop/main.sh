#!/bin/bash
# Train CoOp on one dataset for each seed in SEEDS (default "1 2 3").
#
# Usage: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   CFG      name of configs/trainers/CoOp/CFG.yaml, e.g. rn50_ep50
#   CTP      class token position: end or middle
#   NCTX     number of context tokens, e.g. 16
#   SHOTS    training images per class: 1, 2, 4, 8 or 16
#   CSC      class-specific context: False or True
# Environment: DATA (required), OUTPUT, SEEDS, PYTHON, EXTRA_OPTS (see scripts/common.sh).
# A seed whose output dir already holds results.json is skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 6 6 "bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC" "$@"
DATASET=$1
CFG=$2
CTP=$3
NCTX=$4
SHOTS=$5
CSC=$6
TRAINER=CoOp

require_data
resolve_output_root
resolve_seeds
enter_repo_root
require_config "configs/datasets/${DATASET}.yaml" "Dataset"
require_config "configs/trainers/${TRAINER}/${CFG}.yaml" "Trainer"

for SEED in $SEEDS; do
    DIR=${OUTPUT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    train_args \
        --root "$DATA" \
        --seed "$SEED" \
        --trainer "$TRAINER" \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        --output-dir "$DIR" \
        -- \
        TRAINER.COOP.N_CTX "$NCTX" \
        TRAINER.COOP.CSC "$CSC" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" \
        DATASET.NUM_SHOTS "$SHOTS"
    if finished_run "$DIR"; then
        continue
    fi
    run_train_args
done
