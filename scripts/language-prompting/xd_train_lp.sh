#!/bin/bash
# Deep language prompting (IVLP, text prompts only), cross-dataset step 1: train on all classes of the source dataset.
#
# Usage: bash scripts/language-prompting/xd_train_lp.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only.yaml
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/language-prompting/xd_train_lp.sh DATASET SEED" "$@"
run_xd_train IVLP "vit_b16_c2_ep5_batch4_4ctx_language_only" "$1" "$2"
