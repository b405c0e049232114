#!/bin/bash
# Run one evaluation protocol for one method over datasets x seeds (x shots), by calling the
# method's per-run scripts; runs whose output dir already holds results.json are skipped, so an
# interrupted sweep is resumed by running the same command again.
#
# Usage: bash scripts/sweep.sh [--plan] PROTOCOL METHOD
#   PROTOCOL  base2new   train on base classes, test on new classes (the base test is the training run's)
#             openworld  train on base classes (reusing base2new runs), test on all classes (SUB=all)
#             xd         train on SOURCE_DATASET once per seed, test on every dataset of DATASETS
#             dg         as xd, with the ImageNet variants as targets
#             fewshot    train and test on all classes with each number of shots in SHOTS_LIST
#   METHOD    zsclip coop cocoop vpt language-prompting independent-vlp maple bmip bloom
#             promptsrc coprompt (the regularizers over their official bases, IVLP and MaPLe)
#             promptsrc-maple promptsrc-bmip promptsrc-bloom coprompt-bmip coprompt-bloom (over other bases)
# Environment:
#   DATASETS     datasets to loop over (default: the 11 benchmarks; for dg imagenetv2 imagenet_sketch
#                imagenet_a imagenet_r; for xd/dg the source is left out of the targets)
#   SEEDS        default "1 2 3"
#   SHOTS_LIST   fewshot only, default "1 2 4 8 16"
#   SOURCE_DATASET  xd/dg source (default imagenet)
#   DATA (required), OUTPUT, SHOTS, LOADEP, PYTHON, EXTRA_OPTS are passed on to the per-run scripts
#   (see scripts/common.sh).
# Before the first run it checks DATA and that every dataset folder exists under it (all missing ones
# are listed); the first failing run stops the sweep. At the end it prints the table command.
#
# --plan makes the same checks, then prints the runs instead of running them and exits 0: one line per
# run, in order, with tab-separated fields
#     GROUP  LABEL  SUB  SCRIPT  ARG...
# GROUP names the runs that depend on each other and must run in this order in one job (a training
# run and the tests of its model), LABEL is the progress line, SUB the SUB the run needs (empty: leave
# as is), SCRIPT the per-run script under scripts/ and ARG... its arguments. scripts/launch.py reads it
# to spread a sweep over GPUs or SLURM jobs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROTOCOLS=(base2new openworld xd dg fewshot)
METHODS=(zsclip coop cocoop vpt language-prompting independent-vlp maple bmip bloom
    promptsrc coprompt promptsrc-maple promptsrc-bmip promptsrc-bloom coprompt-bmip coprompt-bloom linear-probe)
# The methods of parse_test_res.py --table composition (BMIP's Table 4: regularizer x base).
COMPOSITION_METHODS=(promptsrc coprompt promptsrc-bmip promptsrc-bloom coprompt-bmip coprompt-bloom)
BENCHMARK_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"

PLAN_ONLY=0
if [ "${1:-}" = --plan ]; then
    PLAN_ONLY=1
    shift
fi
require_arg_count 2 2 "bash scripts/sweep.sh [--plan] PROTOCOL METHOD" "$@"
PROTOCOL=$1
METHOD=$2
require_choice protocol "$PROTOCOL" "${PROTOCOLS[@]}"
require_choice method "$METHOD" "${METHODS[@]}"

# Path under scripts/ of METHOD's per-run script for STEP; the names are the official ones,
# hence the per-method suffixes (and BMIP's unsuffixed cross-dataset scripts, PromptSRC's
# few_shot.sh). The compositions over other bases (promptsrc-bmip, ...) have unsuffixed names.
# Usage: method_script STEP
method_script() {
    local step=$1 suffix=""
    case "$METHOD" in
        vpt) suffix=_vpt ;;
        language-prompting) suffix=_lp ;;
        independent-vlp) suffix=_ivlp ;;
        maple) suffix=_maple ;;
        bloom) suffix=_bloom ;;
        bmip) [[ "$step" == xd_* ]] || suffix=_bmip ;;
        coprompt) suffix=_coprompt ;;
        promptsrc) if [ "$step" = fewshot ]; then step=few_shot; fi ;;
    esac
    echo "${METHOD}/${step}${suffix}.sh"
}

# Every run of the sweep, in order: its dependency group (RUN_GROUP when it was added), a label for
# the progress line, the SUB it needs ("" = leave as is) and the per-run script with its arguments.
# The plan functions set RUN_GROUP so that a test shares the group of the run that trains its model.
RUN_GROUP=""
RUN_GROUPS=()
RUN_LABELS=()
RUN_SUBS=()
RUN_COMMANDS=()
# Usage: add_run LABEL SUB SCRIPT ARG...
add_run() {
    RUN_GROUPS+=("$RUN_GROUP")
    RUN_LABELS+=("$1")
    RUN_SUBS+=("$2")
    RUN_COMMANDS+=("${*:3}")
}

# Base-to-novel and open-world share the training run; they differ in the test's classes.
plan_base_to_novel() {
    local test_sub=$1 dataset seed
    for dataset in $DATASETS; do
        for seed in $SEEDS; do
            RUN_GROUP="$dataset seed $seed"
            if [ "$METHOD" = zsclip ]; then
                # one call evaluates base, new and all classes
                add_run "$METHOD $PROTOCOL $dataset seed $seed" "" "$(method_script base2new)" "$dataset" "$seed"
                continue
            fi
            add_run "$METHOD $PROTOCOL $dataset seed $seed (train on base classes)" "" \
                "$(method_script base2new_train)" "$dataset" "$seed"
            add_run "$METHOD $PROTOCOL $dataset seed $seed (test on $test_sub classes)" "$test_sub" \
                "$(method_script base2new_test)" "$dataset" "$seed"
        done
    done
}

# Cross-dataset and domain generalization: one source run per seed, then every target.
plan_cross_dataset() {
    local source=$1 dataset seed
    for seed in $SEEDS; do
        RUN_GROUP="seed $seed"
        if [ "$METHOD" = cocoop ]; then
            # CoCoOp's official xd_train.sh takes only SEED and trains on SOURCE_DATASET
            add_run "$METHOD $PROTOCOL $source seed $seed (source)" "" "$(method_script xd_train)" "$seed"
        else
            add_run "$METHOD $PROTOCOL $source seed $seed (source)" "" "$(method_script xd_train)" "$source" "$seed"
        fi
        for dataset in $DATASETS; do
            [ "$dataset" = "$source" ] && continue
            add_run "$METHOD $PROTOCOL $dataset seed $seed (target)" "" "$(method_script xd_test)" "$dataset" "$seed"
        done
    done
}

plan_few_shot() {
    local dataset shots seed
    for dataset in $DATASETS; do
        for shots in $SHOTS_LIST; do
            for seed in $SEEDS; do
                RUN_GROUP="$dataset seed $seed shots $shots"
                if [ "$METHOD" = promptsrc ]; then
                    # PromptSRC's official few_shot.sh takes DATASET SHOTS (then our optional SEED)
                    add_run "$METHOD $PROTOCOL $dataset seed $seed shots $shots" "" \
                        "$(method_script fewshot)" "$dataset" "$shots" "$seed"
                    continue
                fi
                add_run "$METHOD $PROTOCOL $dataset seed $seed shots $shots" "" \
                    "$(method_script fewshot)" "$dataset" "$seed" "$shots"
            done
        done
    done
}

# --- checks, all before the first run ---
require_data
export DATA
if [ -n "${OUTPUT:-}" ]; then
    OUTPUT=$(absolute_path "$OUTPUT")
    export OUTPUT
fi
resolve_seeds
export SEEDS
SOURCE_DATASET=${SOURCE_DATASET:-imagenet}
export SOURCE_DATASET
case "$PROTOCOL" in
    dg) DATASETS=${DATASETS:-$DG_TARGETS} ;;
    xd) DATASETS=${DATASETS:-${BENCHMARK_DATASETS/imagenet /}} ;;
    *) DATASETS=${DATASETS:-$BENCHMARK_DATASETS} ;;
esac
[ -n "${DATASETS// /}" ] || die "DATASETS is empty: set it to e.g. \"eurosat dtd\""
SHOTS_LIST=${SHOTS_LIST:-1 2 4 8 16}
for shots in $SHOTS_LIST; do
    require_integer SHOTS_LIST "$shots"
done

enter_repo_root
NEEDED_DATASETS=$DATASETS
if [ "$PROTOCOL" = xd ] || [ "$PROTOCOL" = dg ]; then
    NEEDED_DATASETS="$SOURCE_DATASET $DATASETS"
fi
unknown=()
for dataset in $NEEDED_DATASETS; do
    [ -f "configs/datasets/${dataset}.yaml" ] || unknown+=("$dataset")
done
[ "${#unknown[@]}" -eq 0 ] || die "unknown datasets (no configs/datasets/<name>.yaml): ${unknown[*]}"
require_dataset_folders $NEEDED_DATASETS

case "$PROTOCOL" in
    base2new) plan_base_to_novel new ;;
    openworld) plan_base_to_novel all ;;
    xd | dg) plan_cross_dataset "$SOURCE_DATASET" ;;
    fewshot) plan_few_shot ;;
esac

for script in $(printf '%s\n' "${RUN_COMMANDS[@]}" | cut -d' ' -f1 | sort -u); do
    [ -f "scripts/$script" ] || die "method $METHOD has no script scripts/$script for protocol $PROTOCOL"
done

if [ "$PLAN_ONLY" = 1 ]; then
    # Dataset names, seeds and script paths hold no whitespace, so the arguments split on spaces.
    for index in "${!RUN_COMMANDS[@]}"; do
        printf '%s\t%s\t%s\t%s\n' "${RUN_GROUPS[$index]}" "${RUN_LABELS[$index]}" "${RUN_SUBS[$index]}" \
            "${RUN_COMMANDS[$index]// /$'\t'}"
    done
    exit 0
fi

# --- the runs ---
# train.py exits 75 when another live run holds the output dir (a sweep started twice, a launcher
# retry racing a job): that run is skipped, and so are the later runs of its group (they need it).
EXIT_LOCKED=75
total=${#RUN_COMMANDS[@]}
locked=0
locked_group=""
for index in "${!RUN_COMMANDS[@]}"; do
    echo "[$((index + 1))/$total] ${RUN_LABELS[$index]}"
    if [ -n "$locked_group" ] && [ "${RUN_GROUPS[$index]}" = "$locked_group" ]; then
        echo "Skipped: it needs the run that another process is doing (${locked_group})"
        locked=$((locked + 1))
        continue
    fi
    read -r -a command <<< "${RUN_COMMANDS[$index]}"
    status=0
    if [ -n "${RUN_SUBS[$index]}" ]; then
        SUB=${RUN_SUBS[$index]} bash "scripts/${command[0]}" "${command[@]:1}" || status=$?
    else
        bash "scripts/${command[0]}" "${command[@]:1}" || status=$?
    fi
    if [ "$status" -eq "$EXIT_LOCKED" ]; then
        echo "Skipped: another process is running it right now"
        locked=$((locked + 1))
        locked_group=${RUN_GROUPS[$index]}
        continue
    fi
    [ "$status" -eq 0 ] || die "run $((index + 1))/$total failed (exit $status): bash scripts/${RUN_COMMANDS[$index]}"
done

if [ "$locked" -gt 0 ]; then
    echo "Sweep done: $total runs of $METHOD $PROTOCOL, $locked skipped because another process holds them;" \
        "run the same command again once it has finished to complete the sweep."
else
    echo "Sweep done: $total runs of $METHOD $PROTOCOL."
fi
echo "Build the table (from $PWD) with:"
echo "python parse_test_res.py --table $PROTOCOL ${OUTPUT:-$PWD/output}"
if [ "$PROTOCOL" = base2new ] && [[ " ${COMPOSITION_METHODS[*]} " == *" $METHOD "* ]]; then
    echo "and the regularizer x base table (BMIP's Table 4, once its other methods have run) with:"
    echo "python parse_test_res.py --table composition ${OUTPUT:-$PWD/output}"
fi
