#!/bin/bash
# Zero-shot CLIP in the few-shot layout: evaluates all classes (nothing is trained, SHOTS only names the
# dir), so the few-shot table can show zero-shot CLIP next to the trained methods.
#
# Usage: bash scripts/zsclip/fewshot.sh DATASET SEED SHOTS [CFG]
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (zero-shot results do not depend on it; it names the output dir)
#   SHOTS    1, 2, 4, 8 or 16: names the dir only
#   CFG      name of configs/trainers/CoOp/CFG.yaml that picks the backbone (default vit_b16)
# Output: ${OUTPUT}/fewshot/${DATASET}/shots_${SHOTS}/ZeroshotCLIP/${CFG}/seed${SEED}
#   (skipped when it already holds results.json).
# Environment: DATA (required), OUTPUT, PYTHON, EXTRA_OPTS (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 3 4 "bash scripts/zsclip/fewshot.sh DATASET SEED SHOTS [CFG]" "$@"
run_fewshot ZeroshotCLIP "${4:-vit_b16}" "$1" "$2" "$3" --eval-only
