#!/bin/bash
# PromptSRC (over IVLP), few-shot (CoOp's protocol): train on ALL classes with SHOTS images each, test
# on all classes (the final test of the run: the aggregated prompts of epoch 50). Name and argument
# order as in muzairkhattak/PromptSRC, whose script loops seeds 1, 2 and 3; SEED runs one seed only
# (what scripts/sweep.sh does).
#
# Usage: bash scripts/promptsrc/few_shot.sh DATASET SHOTS [SEED]
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SHOTS    training images per class: 1, 2, 4, 8 or 16
#   SEED     one seed; omitted: every seed of SEEDS (default 1 2 3), stopping at the first failure
# Config: configs/trainers/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml (50 epochs; its GPA
#   30/30 is the official one for ImageNet, Caltech101, OxfordPets, Food101, UCF101 and SUN397)
# Output: ${OUTPUT}/fewshot/${DATASET}/shots_${SHOTS}/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot/seed${SEED}
#   (skipped when it already holds results.json). This is the layout of every other method here; the
#   official script writes to output/${DATASET}/PromptSRC/${CFG}_${SHOTS}shots/seed${SEED}.
# Environment: DATA (required), OUTPUT, SEEDS, PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 3 "bash scripts/promptsrc/few_shot.sh DATASET SHOTS [SEED]" "$@"
if [ "$#" -eq 3 ]; then
    SEEDS=$3
    require_integer SEED "$SEEDS"
else
    resolve_seeds
fi
for seed in $SEEDS; do
    # a subshell per seed: each run resolves OUTPUT and enters the repo from the caller's view
    ( run_fewshot PromptSRC "vit_b16_c2_ep50_batch4_4+4ctx_few_shot" "$1" "$seed" "$2" )
done
