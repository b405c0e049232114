#!/bin/bash
# Zero-shot CLIP (hand-crafted prompts, nothing trained) in the base-to-novel layout: evaluates base
# classes, new classes and all classes (open-world metrics), so it fills the same tables as the methods.
#
# Usage: bash scripts/zsclip/base2new.sh DATASET SEED [CFG]
#   DATASET  name of configs/datasets/DATASET.yaml, e.g. eurosat
#   SEED     one seed, e.g. 1 (zero-shot results do not depend on it; it names the output dir)
#   CFG      name of configs/trainers/CoOp/CFG.yaml that picks the backbone (default vit_b16)
# Output, each skipped when it already holds results.json:
#   ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/ZeroshotCLIP/${CFG}/seed${SEED}  (base classes)
#   ${OUTPUT}/base2new/test_new/...  (new classes)   ${OUTPUT}/base2new/test_all/...  (all classes)
# Environment: DATA (required), OUTPUT, SHOTS (default 16, only names the dir), PYTHON, EXTRA_OPTS
#   (see scripts/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_arg_count 2 3 "bash scripts/zsclip/base2new.sh DATASET SEED [CFG]" "$@"
run_zeroshot_base2new "${3:-vit_b16}" "$1" "$2"
