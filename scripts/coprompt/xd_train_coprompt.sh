#!/bin/bash
# CoPrompt (over MaPLe), cross-dataset step 1: train on all classes of the source dataset. Ours: the
# CoPrompt repository has base-to-novel scripts only.
#
# Usage: bash scripts/coprompt/xd_train_coprompt.sh DATASET SEED
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (the papers average seeds 1, 2 and 3)
# Config: configs/trainers/CoPrompt/coprompt.yaml (the only one; 8 epochs), with
#   TRAINER.CoPrompt.DATASET_SETTINGS False: the config's N_CTX 2, PROMPT_DEPTH 9 and W on every dataset,
#   since the per-dataset settings would give each target a prompt shape other than the source model's
#   (COPROMPT_XD_OPTS in scripts/common.sh).
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/CoPrompt/coprompt/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 2 "bash scripts/coprompt/xd_train_coprompt.sh DATASET SEED" "$@"
run_xd_train CoPrompt "coprompt" "$1" "$2" -- "${COPROMPT_XD_OPTS[@]}"
