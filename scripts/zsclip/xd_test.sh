#!/bin/bash
# Zero-shot CLIP, cross-dataset step 2: evaluate on a target dataset.
#
# Usage: bash scripts/zsclip/xd_test.sh DATASET SEED [CFG]
#   DATASET  name of configs/datasets/DATASET.yaml, the target, e.g. caltech101 or imagenet_sketch
#   SEED     one seed, e.g. 1 (zero-shot results do not depend on it; it names the output dir)
#   CFG      name of configs/trainers/CoOp/CFG.yaml that picks the backbone (default vit_b16)
# Output: ${OUTPUT}/xd/test/${DATASET}/shots_${SHOTS}/ZeroshotCLIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, SHOTS (default 16, only names the dir), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 3 "bash scripts/zsclip/xd_test.sh DATASET SEED [CFG]" "$@"
run_zeroshot_xd_test "${3:-vit_b16}" "$1" "$2"
