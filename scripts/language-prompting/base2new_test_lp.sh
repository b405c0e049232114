#!/bin/bash
# Deep language prompting (IVLP, text prompts only), base-to-novel step 2: evaluate the step-1 model on the novel classes.
#
# Usage: bash scripts/language-prompting/base2new_test_lp.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only.yaml
# Output: ${OUTPUT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only/seed${SEED},
#   model from ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), SUB (default new), LOADEP (default 5), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/language-prompting/base2new_test_lp.sh DATASET SEED" "$@"
run_base2new_test IVLP "vit_b16_c2_ep5_batch4_4ctx_language_only" "$1" "$2" "${LOADEP:-5}" "scripts/language-prompting/base2new_train_lp.sh"
