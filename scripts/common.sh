# Shared helpers for the run scripts under scripts/<method>/.
#
# Source it from a script with
#     source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
# Environment read here:
#     DATA        dataset root (required); a relative path is taken from the caller's cwd
#     OUTPUT      root of all output dirs (default: "output" inside the repo, as in CoOp);
#                 a relative path given by the user is taken from the caller's cwd
#     SEEDS       seeds to loop over (default: "1 2 3")
#     PYTHON      interpreter that runs train.py (default: python)
#     EXTRA_OPTS  extra train.py arguments, e.g. "--device cpu OPTIM.MAX_EPOCH 1"
#     CFG         trainer config name that replaces every script's own, also one given as an argument
#                 (configs/trainers/<T>/CFG.yaml; language-prompting scripts read CFG_language_only),
#                 e.g. CFG=mini_clip for the bundled mini CLIP (zero-shot CLIP reads CoOp's folder);
#                 set LOADEP too when its epoch count differs from the script's default

# Kept outside any function: BASH_SOURCE[0] is this file only while it is being sourced.
COMMON_SH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Print a one-line error to stderr and stop the script.
die() {
    echo "ERROR: $*" >&2
    exit 1
}

# Stop with the usage line unless the script got between MIN and MAX positional arguments.
# Usage: require_arg_count MIN MAX "USAGE" "$@"
require_arg_count() {
    local min=$1 max=$2 usage=$3
    shift 3
    if [ "$#" -lt "$min" ] || [ "$#" -gt "$max" ]; then
        die "expected $( [ "$min" -eq "$max" ] && echo "$min" || echo "$min to $max" ) arguments, got $#. Usage: $usage"
    fi
}

# Make a user-given path absolute against the caller's cwd (before enter_repo_root changes it).
absolute_path() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$PWD/$1" ;;
    esac
}

# Check DATA and make it absolute, so the dataset root survives the cd to the repo root.
require_data() {
    if [ -z "${DATA:-}" ]; then
        die "DATA is not set: export DATA=/path/to/datasets"
    fi
    if [ ! -d "$DATA" ]; then
        die "DATA folder does not exist: $DATA"
    fi
    DATA="$(cd "$DATA" && pwd)"
}

# Set OUTPUT: the user's value made absolute, or CoOp's "output" relative to the repo root.
resolve_output_root() {
    if [ -n "${OUTPUT:-}" ]; then
        OUTPUT="$(absolute_path "$OUTPUT")"
    else
        OUTPUT=output
    fi
}

# Set SEEDS (default "1 2 3") and reject anything that train.py's --seed would not accept.
resolve_seeds() {
    SEEDS="${SEEDS:-1 2 3}"
    local seed
    for seed in $SEEDS; do
        case "$seed" in
            '' | *[!0-9]*) die "SEEDS must be non-negative integers separated by spaces, got '$SEEDS'" ;;
        esac
    done
    [ -n "${SEEDS// /}" ] || die "SEEDS is empty: set it to e.g. \"1 2 3\""
}

# cd to the repository root: the nearest directory at or above scripts/ that holds train.py.
enter_repo_root() {
    local dir="$COMMON_SH_DIR"
    while [ "$dir" != "/" ] && [ ! -f "$dir/train.py" ]; do
        dir="$(dirname "$dir")"
    done
    [ -f "$dir/train.py" ] || die "train.py not found in $COMMON_SH_DIR or any parent directory"
    cd "$dir"
}

# Stop unless the config file exists; WHAT names the script argument that chose it.
# Usage: require_config PATH WHAT
require_config() {
    local path=$1 what=$2
    if [ ! -f "$path" ]; then
        local available="" candidate
        for candidate in "$(dirname "$path")"/*.yaml; do
            [ -f "$candidate" ] && available+="$(basename "$candidate" .yaml) "
        done
        die "$what config not found: $path (available: ${available:-none})"
    fi
}

# Set TRAIN_ARGS to train.py's arguments: the named flags before "--", then EXTRA_OPTS, then the
# KEY VALUE config opts after "--". EXTRA_OPTS goes between the two: train.py takes every word after
# the first KEY as a config opt, so flags such as "--device cpu" must come before the KEY VALUE pairs.
# Usage: train_args --root R ... -- KEY VALUE ...
train_args() {
    local flags=() opts=() extra=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
        flags+=("$1")
        shift
    done
    [ "$#" -gt 0 ] && shift
    opts=("$@")
    read -r -a extra <<< "${EXTRA_OPTS:-}"
    TRAIN_ARGS=(${flags[@]+"${flags[@]}"} ${extra[@]+"${extra[@]}"} ${opts[@]+"${opts[@]}"})
}

# True (and says so) when DIR already holds a finished run of TRAIN_ARGS (set by train_args), so
# sweeps can be restarted. A finished run of other arguments (another EXTRA_OPTS, LOADEP or
# backbone into the same OUTPUT) stops the script with a one-line error: its results would
# otherwise stand in for this run's. The comparison (scripts/finished_run.py) needs no torch.
# Usage: finished_run DIR
finished_run() {
    local dir=$1 status=0
    [ -f "$dir/results.json" ] || return 1
    "${PYTHON:-python}" "$COMMON_SH_DIR/finished_run.py" "${TRAIN_ARGS[@]}" || status=$?
    case "$status" in
        0) return 0 ;;
        1) return 1 ;;
        *) exit "$status" ;;
    esac
}

# Run train.py with TRAIN_ARGS (set by train_args).
run_train_args() {
    "${PYTHON:-python}" train.py "${TRAIN_ARGS[@]}"
}

# --- base-to-novel and cross-dataset protocols (MaPLe-style scripts: one DATASET and SEED per call) ---
# Environment read here besides the above:
#     SHOTS    training images per class (default 16, the official protocol value)
#     LOADEP   epoch of the checkpoint the test scripts load (default: the script's official value)
#     SUB      classes the base-to-novel test script evaluates: new (default), base or all
#     SOURCE_DATASET  dataset the cross-dataset model was trained on (default imagenet)

# Stop unless $2 (named $1 in the message) is a non-negative integer, as train.py's --seed/--load-epoch need.
require_integer() {
    local name=$1 value=$2
    case "$value" in
        '' | *[!0-9]*) die "$name must be a non-negative integer, got '$value'" ;;
    esac
}

# Set SHOTS (default 16) and reject anything DATASET.NUM_SHOTS would not take.
resolve_shots() {
    SHOTS="${SHOTS:-16}"
    require_integer SHOTS "$SHOTS"
}

# Stop unless DIR holds a trained model; HINT says how to train it.
# Usage: require_model_dir DIR HINT
require_model_dir() {
    local dir=$1 hint=$2
    [ -d "$dir" ] || die "model dir not found: $dir (train it first: $hint)"
}

# The trainer config a run uses: the script's own DEFAULT, or the user's CFG when set. Scripts
# whose own config is a language-only variant (name ending in _language_only) get CFG's
# language-only variant, so that CFG=mini_clip keeps deep language prompting apart from IVLP.
# Usage: config_name DEFAULT
config_name() {
    local default=$1
    if [ -z "${CFG:-}" ]; then
        echo "$default"
    elif [[ "$default" == *_language_only ]]; then
        echo "${CFG}_language_only"
    else
        echo "$CFG"
    fi
}

# Checks shared by every protocol runner; leaves the shell at the repo root with DATA, OUTPUT and SHOTS set.
# Usage: prepare_protocol_run TRAINER CFG DATASET SEED
prepare_protocol_run() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    require_integer SEED "$seed"
    require_data
    resolve_output_root
    resolve_shots
    enter_repo_root
    require_config "configs/datasets/${dataset}.yaml" "Dataset"
    require_config "configs/trainers/$(trainer_config_dir "$trainer")/${cfg}.yaml" "Trainer"
}

# The train.py flags every protocol run starts with.
# Usage: protocol_flags TRAINER CFG DATASET SEED OUTPUT_DIR  (result in the array PROTOCOL_FLAGS)
protocol_flags() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 dir=$5
    PROTOCOL_FLAGS=(
        --root "$DATA"
        --seed "$seed"
        --trainer "$trainer"
        --dataset-config-file "configs/datasets/${dataset}.yaml"
        --config-file "configs/trainers/$(trainer_config_dir "$trainer")/${cfg}.yaml"
        --output-dir "$dir"
    )
}

# Base-to-novel, step 1: train on the base half of DATASET's classes with SHOTS images per class, into
# ${OUTPUT}/base2new/train_base/DATASET/shots_${SHOTS}/TRAINER/CFG/seedSEED (skipped if finished).
# FLAG... are extra train.py flags (zero-shot CLIP passes --eval-only: its "training" is one evaluation).
# Usage: run_base2new_train TRAINER CFG DATASET SEED [FLAG...]
run_base2new_train() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    cfg=$(config_name "$cfg")
    shift 4
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    train_into "${OUTPUT}/base2new/train_base/${dataset}/shots_${SHOTS}/${trainer}/${cfg}/seed${seed}" \
        "$trainer" "$cfg" "$dataset" "$seed" "$@" -- DATASET.SUBSAMPLE_CLASSES base
}

# One training run into DIR unless it finished: the protocol's flags, FLAG..., then SHOTS and KEY VALUE...
# Call prepare_protocol_run first.
# Usage: train_into DIR TRAINER CFG DATASET SEED [FLAG...] -- [KEY VALUE...]
train_into() {
    local dir=$1 trainer=$2 cfg=$3 dataset=$4 seed=$5
    shift 5
    local flags=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
        flags+=("$1")
        shift
    done
    [ "$#" -gt 0 ] && shift  # the "--"
    protocol_flags "$trainer" "$cfg" "$dataset" "$seed" "$dir"
    train_args "${PROTOCOL_FLAGS[@]}" ${flags[@]+"${flags[@]}"} -- DATASET.NUM_SHOTS "$SHOTS" "$@"
    finished_run "$dir" && return 0
    run_train_args
}

# Base-to-novel, step 2: evaluate the step-1 model of epoch LOADEP on the SUB classes (default new), into
# ${OUTPUT}/base2new/test_${SUB}/DATASET/shots_${SHOTS}/TRAINER/CFG/seedSEED (skipped if finished).
# SUB=all is the open-world test: it also asks the evaluator for base/new/HM in the all-class label space.
# TRAIN_SCRIPT (e.g. scripts/maple/base2new_train_maple.sh) is named when the model is missing, followed by
# DATASET, SEED and the optional HINT_ARG... (the train script's own extra arguments, e.g. CoPrompt's EXP_NAME).
# Usage: run_base2new_test TRAINER CFG DATASET SEED LOADEP TRAIN_SCRIPT [HINT_ARG...]
run_base2new_test() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 load_epoch=$5 train_script=$6
    local hint_args="${*:7}"
    cfg=$(config_name "$cfg")
    local sub=${SUB:-new}
    case "$sub" in
        base | new | all) ;;
        *) die "SUB must be base, new or all, got '$sub'" ;;
    esac
    require_integer LOADEP "$load_epoch"
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    subsample_opts "$sub"
    local common=${dataset}/shots_${SHOTS}/${trainer}/${cfg}/seed${seed}
    evaluate_into "${OUTPUT}/base2new/test_${sub}/${common}" "${OUTPUT}/base2new/train_base/${common}" \
        "bash ${train_script} ${dataset} ${seed}${hint_args:+ $hint_args}" "$load_epoch" "$trainer" "$cfg" "$dataset" "$seed" \
        DATASET.NUM_SHOTS "$SHOTS" "${SUBSAMPLE_OPTS[@]}"
}

# One evaluation run into DIR of the model saved in MODEL_DIR at epoch LOADEP, unless DIR finished;
# a missing MODEL_DIR stops with HINT (the command that trains it). Call prepare_protocol_run first.
# Usage: evaluate_into DIR MODEL_DIR HINT LOADEP TRAINER CFG DATASET SEED [KEY VALUE...]
evaluate_into() {
    local dir=$1 model_dir=$2 hint=$3 load_epoch=$4 trainer=$5 cfg=$6 dataset=$7 seed=$8
    shift 8
    protocol_flags "$trainer" "$cfg" "$dataset" "$seed" "$dir"
    train_args "${PROTOCOL_FLAGS[@]}" --model-dir "$model_dir" --load-epoch "$load_epoch" --eval-only -- "$@"
    finished_run "$dir" && return 0
    require_model_dir "$model_dir" "$hint"
    run_train_args
}

# Cross-dataset, step 1: train on all classes of DATASET (ImageNet in the papers) with SHOTS images per
# class, into ${OUTPUT}/xd/train/DATASET/shots_${SHOTS}/TRAINER/CFG/seedSEED (skipped if finished).
# FLAG... are extra train.py flags (zero-shot CLIP passes --eval-only), KEY VALUE... extra config opts
# after a "--" (CoPrompt's scripts pass TRAINER.CoPrompt.DATASET_SETTINGS False).
# Usage: run_xd_train TRAINER CFG DATASET SEED [FLAG...] [-- KEY VALUE...]
run_xd_train() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    cfg=$(config_name "$cfg")
    shift 4
    local args=("$@") arg has_separator=0
    for arg in "$@"; do
        if [ "$arg" = "--" ]; then
            has_separator=1
        fi
    done
    [ "$has_separator" = 1 ] || args+=(--)
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    train_into "$(xd_train_dir "$trainer" "$cfg" "$dataset" "$seed")" "$trainer" "$cfg" "$dataset" "$seed" "${args[@]}"
}

# Cross-dataset, step 2: evaluate the step-1 model (trained on SOURCE_DATASET, default imagenet) of epoch
# LOADEP on every class of DATASET, into ${OUTPUT}/xd/test/DATASET/shots_${SHOTS}/TRAINER/CFG/seedSEED.
# TRAIN_HINT is the command named when the model is missing; KEY VALUE... are extra config opts.
# Usage: run_xd_test TRAINER CFG DATASET SEED LOADEP TRAIN_HINT [KEY VALUE...]
run_xd_test() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 load_epoch=$5 train_hint=$6
    shift 6
    cfg=$(config_name "$cfg")
    local source_dataset=${SOURCE_DATASET:-imagenet}
    require_integer LOADEP "$load_epoch"
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    evaluate_into "$(xd_test_dir "$trainer" "$cfg" "$dataset" "$seed")" \
        "$(xd_train_dir "$trainer" "$cfg" "$source_dataset" "$seed")" \
        "$train_hint" "$load_epoch" "$trainer" "$cfg" "$dataset" "$seed" "$@"
}

# --- extra train.py flags for one run (BMIP-style scripts: optional DEVICE, model-best.pth.tar) ---

# Put FLAG... in front of the user's EXTRA_OPTS, so that the next protocol run passes them after the
# script's own flags and before every KEY VALUE pair. EXTRA_OPTS is split on whitespace, hence one word each.
# Usage: prepend_train_flags FLAG...
prepend_train_flags() {
    local flag
    for flag in "$@"; do
        case "$flag" in
            '' | *[[:space:]]*) die "train.py flag '$flag' must be one word without spaces" ;;
        esac
    done
    EXTRA_OPTS="$* ${EXTRA_OPTS:-}"
}

# Make the next protocol run pass "--device DEVICE"; an empty DEVICE passes nothing (train.py picks the device).
# Usage: use_device DEVICE
use_device() {
    local device=$1
    [ -n "$device" ] || return 0
    case "$device" in
        *[[:space:]]*) die "DEVICE must be one word such as cpu, cuda or cuda:1, got '$device'" ;;
    esac
    prepend_train_flags --device "$device"
}

# Choose the checkpoint a test script evaluates and set LOAD_EPOCH for the run_*_test call:
# REQUESTED_EPOCH when not empty (that epoch's model.pth.tar-N), otherwise model-best.pth.tar through
# train.py --best, with LOAD_EPOCH=DEFAULT_EPOCH only filling --load-epoch (train.py ignores it under --best).
# For configs with TEST.FINAL_MODEL best_val, whose runs keep only the best and the last epoch.
# Usage: load_best_unless_epoch_given DEFAULT_EPOCH REQUESTED_EPOCH
load_best_unless_epoch_given() {
    local default_epoch=$1 requested_epoch=${2:-}
    if [ -n "$requested_epoch" ]; then
        LOAD_EPOCH=$requested_epoch
    else
        LOAD_EPOCH=$default_epoch
        prepend_train_flags --best
    fi
}

# --- regularizers composed over prompting bases (PromptSRC, CoPrompt and their compositions) ---

# Epochs a CoPrompt run (over any base) trains on DATASET, hence the epoch its base-to-novel test loads:
# 5 on food101 (the trainer's per-dataset settings, TRAINER.CoPrompt.DATASET_SETTINGS, set MAX_EPOCH 5
# there, as the official README's "test ... food101 ... 5"), 8 (the configs' MAX_EPOCH) elsewhere.
# Usage: coprompt_epochs DATASET
coprompt_epochs() {
    case "$1" in
        food101) echo 5 ;;
        *) echo 8 ;;
    esac
}

# Config opts of every CoPrompt cross-dataset run (train and test): the config's values on every dataset.
# The per-dataset settings would give a target a prompt shape (CoPrompt's N_CTX, PROMPT_DEPTH) other than
# the source model's, which then could not be loaded.
COPROMPT_XD_OPTS=(TRAINER.CoPrompt.DATASET_SETTINGS False)

# Put the runs of a named experiment in a tree of their own: OUTPUT becomes OUTPUT/NAME (OUTPUT's
# default: the repo's output/), with the usual layout under it, so that
# "parse_test_res.py --table base2new OUTPUT/NAME" reads them. An empty NAME or "base2new" (the value
# the official CoPrompt scripts suggest) changes nothing. Call it before the run_* function.
# Usage: use_experiment_name NAME
use_experiment_name() {
    local name=$1
    case "$name" in
        '' | base2new) return 0 ;;
        . | .. | */* | *[[:space:]]*) die "EXP_NAME must be one folder name, got '$name'" ;;
    esac
    if [ -n "${OUTPUT:-}" ]; then
        OUTPUT="$(absolute_path "$OUTPUT")/$name"
    else
        OUTPUT="$(enter_repo_root && pwd)/output/$name"
    fi
}

# --- output dirs, open-world, few-shot and zero-shot runs (one DATASET and SEED per call) ---

# Folder under configs/trainers/ that holds TRAINER's configs: zero-shot CLIP has no config of its own
# and reuses CoOp's backbone configs (rn50, vit_b16, ...), as the official zeroshot.sh does.
# Usage: trainer_config_dir TRAINER
trainer_config_dir() {
    case "$1" in
        ZeroshotCLIP) echo CoOp ;;
        *) echo "$1" ;;
    esac
}

# Cross-dataset dirs (parse_test_res.py --table xd/dg reads these patterns; SHOTS must be set).
# Usage: xd_train_dir TRAINER CFG SOURCE_DATASET SEED ; xd_test_dir TRAINER CFG TARGET_DATASET SEED
xd_train_dir() {
    echo "${OUTPUT}/xd/train/$3/shots_${SHOTS}/$1/$2/seed$4"
}
xd_test_dir() {
    echo "${OUTPUT}/xd/test/$3/shots_${SHOTS}/$1/$2/seed$4"
}

# Set the array SUBSAMPLE_OPTS to the config opts of a test on the SUB classes: SUB=all (open-world)
# adds TEST.OPENWORLD_METRICS True so the evaluator reports base/new/HM inside the all-class label space.
# Usage: subsample_opts SUB
subsample_opts() {
    SUBSAMPLE_OPTS=(DATASET.SUBSAMPLE_CLASSES "$1")
    if [ "$1" = all ]; then
        SUBSAMPLE_OPTS+=(TEST.OPENWORLD_METRICS True)
    fi
}

# Few-shot (CoOp's protocol): train on ALL classes of DATASET with SHOTS images per class, into
# ${OUTPUT}/fewshot/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED (skipped if finished); its final test is
# on all test classes. FLAG... are extra train.py flags (zero-shot CLIP passes --eval-only).
# Usage: run_fewshot TRAINER CFG DATASET SEED SHOTS [FLAG...]
run_fewshot() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 shots=$5
    cfg=$(config_name "$cfg")
    shift 5
    require_integer SHOTS "$shots"
    SHOTS=$shots
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    train_into "${OUTPUT}/fewshot/${dataset}/shots_${SHOTS}/${trainer}/${cfg}/seed${seed}" \
        "$trainer" "$cfg" "$dataset" "$seed" "$@" -- DATASET.SUBSAMPLE_CLASSES all
}

# Evaluate zero-shot CLIP (nothing trained, so no model dir) into DIR, skipped if finished.
# Call prepare_protocol_run ZeroshotCLIP CFG DATASET SEED first.
# Usage: run_zeroshot_eval CFG DATASET SEED DIR [KEY VALUE...]
run_zeroshot_eval() {
    local cfg=$1 dataset=$2 seed=$3 dir=$4
    shift 4
    protocol_flags ZeroshotCLIP "$cfg" "$dataset" "$seed" "$dir"
    train_args "${PROTOCOL_FLAGS[@]}" --eval-only -- "$@"
    finished_run "$dir" && return 0
    run_train_args
}

# Zero-shot CLIP in the base-to-novel layout, so it sits in the same tables as the trained methods:
# base classes into base2new/train_base, new classes into base2new/test_new and the open-world test
# (all classes) into base2new/test_all, each under DATASET/shots_${SHOTS}/ZeroshotCLIP/CFG/seedSEED.
# Usage: run_zeroshot_base2new CFG DATASET SEED
run_zeroshot_base2new() {
    local cfg=$1 dataset=$2 seed=$3
    cfg=$(config_name "$cfg")
    prepare_protocol_run ZeroshotCLIP "$cfg" "$dataset" "$seed"
    local common=${dataset}/shots_${SHOTS}/ZeroshotCLIP/${cfg}/seed${seed}
    local step_and_sub step sub
    for step_and_sub in train_base:base test_new:new test_all:all; do
        step=${step_and_sub%%:*}
        sub=${step_and_sub#*:}
        subsample_opts "$sub"
        run_zeroshot_eval "$cfg" "$dataset" "$seed" "${OUTPUT}/base2new/${step}/${common}" \
            DATASET.NUM_SHOTS "$SHOTS" "${SUBSAMPLE_OPTS[@]}"
    done
}

# Zero-shot CLIP on the cross-dataset target DATASET, into the dir run_xd_test writes for trained methods.
# Usage: run_zeroshot_xd_test CFG DATASET SEED
run_zeroshot_xd_test() {
    local cfg=$1 dataset=$2 seed=$3
    cfg=$(config_name "$cfg")
    prepare_protocol_run ZeroshotCLIP "$cfg" "$dataset" "$seed"
    run_zeroshot_eval "$cfg" "$dataset" "$seed" "$(xd_test_dir ZeroshotCLIP "$cfg" "$dataset" "$seed")"
}

# --- sweeps (scripts/sweep.sh) ---

# Folder under $DATA of a benchmark dataset (the dataset_dir of its class in datasets/); fails for a
# dataset without a fixed folder (e.g. imagefolder, whose folder comes from its config).
# Usage: dataset_folder DATASET
dataset_folder() {
    case "$1" in
        caltech101) echo caltech-101 ;;
        food101) echo food-101 ;;
        imagenet_a) echo imagenet-adversarial ;;
        imagenet_r) echo imagenet-rendition ;;
        imagenet_sketch) echo imagenet-sketch ;;
        imagenet | imagenetv2 | dtd | eurosat | fgvc_aircraft | oxford_flowers | oxford_pets | stanford_cars \
            | sun397 | ucf101) echo "$1" ;;
        *) return 1 ;;
    esac
}

# Stop, naming every missing folder at once, unless each DATASET's folder exists under $DATA
# (call require_data first). Datasets without a fixed folder are left to train.py to check.
# Usage: require_dataset_folders DATASET...
require_dataset_folders() {
    local dataset folder missing=()
    for dataset in "$@"; do
        folder=$(dataset_folder "$dataset") || continue
        [ -d "$DATA/$folder" ] || missing+=("$folder (for $dataset)")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        local joined
        joined=$(printf ', %s' "${missing[@]}")
        die "dataset folders missing in DATA=$DATA: ${joined:2} (see docs/DATASETS.md)"
    fi
}

# Stop unless VALUE is one of the CHOICES; NAME labels the value in the message.
# Usage: require_choice NAME VALUE CHOICE...
require_choice() {
    local name=$1 value=$2
    shift 2
    local choice
    for choice in "$@"; do
        [ "$value" = "$choice" ] && return 0
    done
    die "unknown $name '$value' (valid: $*)"
}
