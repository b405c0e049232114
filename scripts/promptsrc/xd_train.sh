#!/bin/bash
# PromptSRC (over IVLP), cross-dataset step 1: train on all classes of the source dataset. Name and
# arguments as in muzairkhattak/PromptSRC (whose script names a config "ep5" that its repo does not hold;
# this is the 20-epoch cross-dataset config of that repo).
#
# Usage: bash scripts/promptsrc/xd_train.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets/seed${SEED}
#   (skipped when it already holds results.json). This is the layout of every other method here; the
#   official script writes to output/${DATASET}/PromptSRC/${CFG}_${SHOTS}shots/seed${SEED}.
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/promptsrc/xd_train.sh DATASET SEED" "$@"
run_xd_train PromptSRC "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets" "$1" "$2"
