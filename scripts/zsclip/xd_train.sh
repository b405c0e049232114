#!/bin/bash
# Zero-shot CLIP, cross-dataset "step 1": evaluate on the source dataset (nothing is trained), in the
# dir the trained methods use, so the source column of the cross-dataset tables has a value.
#
# Usage: bash scripts/zsclip/xd_train.sh DATASET SEED [CFG]
#   DATASET  name of configs/datasets/DATASET.yaml, imagenet in the papers
#   SEED     one seed, e.g. 1 (zero-shot results do not depend on it; it names the output dir)
#   CFG      name of configs/trainers/CoOp/CFG.yaml that picks the backbone (default vit_b16)
# Output: ${OUTPUT}/xd/train/${DATASET}/shots_${SHOTS}/ZeroshotCLIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16, only names the dir), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 3 "bash scripts/zsclip/xd_train.sh DATASET SEED [CFG]" "$@"
run_xd_train ZeroshotCLIP "${3:-vit_b16}" "$1" "$2" --eval-only
