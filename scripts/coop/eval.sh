#!/bin/bash
# Evaluate CoOp models trained on a source dataset (ImageNet by default) on another dataset,
# one run per seed in SEEDS (default "1 2 3"), as in CoOp's domain-generalization study.
#
# Usage: bash scripts/coop/eval.sh DATASET CFG [CTP NCTX SHOTS CSC]
#   DATASET  target dataset, name of configs/datasets/DATASET.yaml, e.g. imagenet_sketch
#   CFG      name of configs/trainers/CoOp/CFG.yaml the source model was trained with
#   CTP NCTX SHOTS CSC  the settings of the source model (default: end 16 16 False, CoOp's)
# Environment: DATA (required), OUTPUT, SEEDS, PYTHON, EXTRA_OPTS (see scripts/common.sh),
#   SOURCE_DATASET (default imagenet), LOAD_EPOCH (default 50): which checkpoint to load from
#   ${OUTPUT}/${SOURCE_DATASET}/CoOp/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}.
# A seed whose output dir already holds results.json is skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 6 "bash scripts/coop/eval.sh DATASET CFG [CTP NCTX SHOTS CSC]" "$@"
DATASET=$1
CFG=$2
CTP=${3:-end}
NCTX=${4:-16}
SHOTS=${5:-16}
CSC=${6:-False}
TRAINER=CoOp
SOURCE_DATASET=${SOURCE_DATASET:-imagenet}
LOAD_EPOCH=${LOAD_EPOCH:-50}

require_data
resolve_output_root
resolve_seeds
enter_repo_root
require_config "configs/datasets/${DATASET}.yaml" "Dataset"
require_config "configs/trainers/${TRAINER}/${CFG}.yaml" "Trainer"

SETTING=${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}
for SEED in $SEEDS; do
    DIR=${OUTPUT}/evaluation/${TRAINER}/${SETTING}/${DATASET}/seed${SEED}
    MODEL_DIR=${OUTPUT}/${SOURCE_DATASET}/${TRAINER}/${SETTING}/seed${SEED}
    train_args \
        --root "$DATA" \
        --seed "$SEED" \
        --trainer "$TRAINER" \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        --output-dir "$DIR" \
        --model-dir "$MODEL_DIR" \
        --load-epoch "$LOAD_EPOCH" \
        --eval-only \
        -- \
        TRAINER.COOP.N_CTX "$NCTX" \
        TRAINER.COOP.CSC "$CSC" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP"
    if finished_run "$DIR"; then
        continue
    fi
    if [ ! -d "$MODEL_DIR" ]; then
        die "model dir not found: $MODEL_DIR (train it first: bash scripts/coop/main.sh ${SOURCE_DATASET} ${CFG} ${CTP} ${NCTX} ${SHOTS} ${CSC})"
    fi
    run_train_args
done
