#!/usr/bin/env bash
# The built-in default: the base-to-novel protocol on the synthetic MiniShapes benchmark with the
# bundled, CPU-pretrained mini CLIP. No GPU, no downloads, a few minutes on 2 CPU cores.
#
# Zero-shot CLIP, CoOp, MaPLe, BMIP and Bloom are trained on the 32 base classes (16 shots, seed 1)
# and tested on the base and the 32 new classes; the Base / New / HM table comes at the end. The runs
# go through the same per-run scripts and sweeps as the real benchmarks (scripts/sweep.sh with
# CFG=mini_clip, i.e. configs/trainers/<method>/mini_clip.yaml), into the official folder pattern
# under $OUTPUT, so `python parse_test_res.py --table base2new $OUTPUT` works on it.
#
# Environment (all optional):
#   OUTPUT   where the runs go (default output/quickstart, or output/quickstart_epN with EPOCHS=N);
#            DATA defaults to $OUTPUT/data, where MiniShapes renders itself on first use
#   METHODS  default "zsclip coop maple bmip bloom" (any of scripts/sweep.sh's methods)
#   SEEDS    default 1;  SHOTS default 16
#   EPOCHS   train for this many epochs instead of the configs' 10 (at least 2: the first epoch is a
#            warm-up at lr 1e-5; the tests use 4)
#   PYTHON   interpreter (default python); EXTRA_OPTS extra train.py flags first, then KEY VALUE pairs
# The mini CLIP is a teaching and test model, not a stand-in for ViT-B/16 (docs/MINI_CLIP.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHON=${PYTHON:-python}
EPOCHS=${EPOCHS:-}
if [ -n "${EPOCHS}" ] && ! [[ "${EPOCHS}" =~ ^[1-9][0-9]*$ && "${EPOCHS}" -ge 2 ]]; then
    echo "ERROR: EPOCHS must be an integer >= 2 (the first epoch is a warm-up at lr 1e-5), got '${EPOCHS}'" >&2
    exit 1
fi
# Finished runs are skipped, so runs of another length get their own default folder.
export OUTPUT=${OUTPUT:-output/quickstart${EPOCHS:+_ep${EPOCHS}}}
export DATA=${DATA:-${OUTPUT}/data}
export DATASETS=minishapes CFG=mini_clip
export SEEDS=${SEEDS:-1} SHOTS=${SHOTS:-16}
METHODS=${METHODS:-zsclip coop maple bmip bloom}
# Flags (--device, the user's) before every KEY VALUE pair.
export EXTRA_OPTS="--device cpu ${EXTRA_OPTS:-} ${EPOCHS:+OPTIM.MAX_EPOCH ${EPOCHS}}"
export LOADEP=${EPOCHS:-10}
mkdir -p "${DATA}"

read -r -a methods <<< "${METHODS}"
total=${#methods[@]}
echo "Base-to-novel on MiniShapes with the mini CLIP: ${METHODS} (seeds ${SEEDS}, ${SHOTS} shots); runs under ${OUTPUT}"
for index in "${!methods[@]}"; do
    method=${methods[$index]}
    echo "[$((index + 1))/${total}] ${method}"
    bash scripts/sweep.sh base2new "${method}" | grep -E "^\[[0-9]+/[0-9]+\]" | sed 's/^/      /'
done

# The table lists the methods in the order they ran.
trainers=()
for method in "${methods[@]}"; do
    case "$method" in
        zsclip) trainers+=(ZeroshotCLIP) ;;
        coop) trainers+=(CoOp) ;;
        cocoop) trainers+=(CoCoOp) ;;
        vpt) trainers+=(VPT) ;;
        language-prompting | independent-vlp) trainers+=(IVLP) ;;
        maple) trainers+=(MaPLe) ;;
        bmip) trainers+=(BMIP) ;;
        bloom) trainers+=(Bloom) ;;
        promptsrc) trainers+=(PromptSRC) ;;
        coprompt) trainers+=(CoPrompt) ;;
        promptsrc-maple) trainers+=(PromptSRC_MaPLe) ;;
        promptsrc-bmip) trainers+=(PromptSRC_BMIP) ;;
        promptsrc-bloom) trainers+=(PromptSRC_Bloom) ;;
        coprompt-bmip) trainers+=(CoPrompt_BMIP) ;;
        coprompt-bloom) trainers+=(CoPrompt_Bloom) ;;
    esac
done
echo "Base / New / HM (python parse_test_res.py --table base2new --rows methods ${OUTPUT}):"
"${PYTHON}" parse_test_res.py --table base2new --rows methods "${OUTPUT}" --trainers "${trainers[@]}"
