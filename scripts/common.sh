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

# True (and says so) when DIR already holds a finished run, so sweeps can be restarted.
results_exist() {
    local dir=$1
    if [ -f "$dir/results.json" ]; then
        echo "Results are available in $dir. Skip this job"
        return 0
    fi
    return 1
}

# Run train.py. Arguments before "--" are named flags, after it KEY VALUE config opts.
# EXTRA_OPTS goes between the two: train.py takes every word after the first KEY as a
# config opt, so flags such as "--device cpu" must come before the KEY VALUE pairs.
# Usage: run_train --root R ... -- KEY VALUE ...
run_train() {
    local flags=() opts=() extra=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
        flags+=("$1")
        shift
    done
    [ "$#" -gt 0 ] && shift
    opts=("$@")
    read -r -a extra <<< "${EXTRA_OPTS:-}"
    "${PYTHON:-python}" train.py "${flags[@]}" ${extra[@]+"${extra[@]}"} ${opts[@]+"${opts[@]}"}
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
    require_config "configs/trainers/${trainer}/${cfg}.yaml" "Trainer"
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
        --config-file "configs/trainers/${trainer}/${cfg}.yaml"
        --output-dir "$dir"
    )
}

# Base-to-novel, step 1: train on the base half of DATASET's classes with SHOTS images per class, into
# ${OUTPUT}/base2new/train_base/DATASET/shots_${SHOTS}/TRAINER/CFG/seedSEED (skipped if finished).
# Usage: run_base2new_train TRAINER CFG DATASET SEED
run_base2new_train() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    local dir=${OUTPUT}/base2new/train_base/${dataset}/shots_${SHOTS}/${trainer}/${cfg}/seed${seed}
    if results_exist "$dir"; then
        return 0
    fi
    protocol_flags "$trainer" "$cfg" "$dataset" "$seed" "$dir"
    run_train "${PROTOCOL_FLAGS[@]}" -- \
        DATASET.NUM_SHOTS "$SHOTS" \
        DATASET.SUBSAMPLE_CLASSES base
}

# Base-to-novel, step 2: evaluate the step-1 model of epoch LOADEP on the SUB classes (default new), into
# ${OUTPUT}/base2new/test_${SUB}/DATASET/shots_${SHOTS}/TRAINER/CFG/seedSEED (skipped if finished).
# TRAIN_SCRIPT (e.g. scripts/maple/base2new_train_maple.sh) is named when the model is missing.
# Usage: run_base2new_test TRAINER CFG DATASET SEED LOADEP TRAIN_SCRIPT
run_base2new_test() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 load_epoch=$5 train_script=$6
    local sub=${SUB:-new}
    case "$sub" in
        base | new | all) ;;
        *) die "SUB must be base, new or all, got '$sub'" ;;
    esac
    require_integer LOADEP "$load_epoch"
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    local common=${dataset}/shots_${SHOTS}/${trainer}/${cfg}/seed${seed}
    local model_dir=${OUTPUT}/base2new/train_base/${common}
    local dir=${OUTPUT}/base2new/test_${sub}/${common}
    if results_exist "$dir"; then
        return 0
    fi
    require_model_dir "$model_dir" "bash ${train_script} ${dataset} ${seed}"
    protocol_flags "$trainer" "$cfg" "$dataset" "$seed" "$dir"
    run_train "${PROTOCOL_FLAGS[@]}" \
        --model-dir "$model_dir" \
        --load-epoch "$load_epoch" \
        --eval-only \
        -- \
        DATASET.NUM_SHOTS "$SHOTS" \
        DATASET.SUBSAMPLE_CLASSES "$sub"
}

# Cross-dataset, step 1: train on all classes of DATASET (ImageNet in the papers) with SHOTS images per
# class, into ${OUTPUT}/DATASET/TRAINER/CFG_${SHOTS}shots/seedSEED (skipped if finished).
# Usage: run_xd_train TRAINER CFG DATASET SEED
run_xd_train() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    local dir=${OUTPUT}/${dataset}/${trainer}/${cfg}_${SHOTS}shots/seed${seed}
    if results_exist "$dir"; then
        return 0
    fi
    protocol_flags "$trainer" "$cfg" "$dataset" "$seed" "$dir"
    run_train "${PROTOCOL_FLAGS[@]}" -- DATASET.NUM_SHOTS "$SHOTS"
}

# Cross-dataset, step 2: evaluate the step-1 model (trained on SOURCE_DATASET, default imagenet) of epoch
# LOADEP on every class of DATASET, into ${OUTPUT}/evaluation/TRAINER/CFG_${SHOTS}shots/DATASET/seedSEED.
# TRAIN_HINT is the command named when the model is missing.
# Usage: run_xd_test TRAINER CFG DATASET SEED LOADEP TRAIN_HINT
run_xd_test() {
    local trainer=$1 cfg=$2 dataset=$3 seed=$4 load_epoch=$5 train_hint=$6
    local source_dataset=${SOURCE_DATASET:-imagenet}
    require_integer LOADEP "$load_epoch"
    prepare_protocol_run "$trainer" "$cfg" "$dataset" "$seed"
    local model_dir=${OUTPUT}/${source_dataset}/${trainer}/${cfg}_${SHOTS}shots/seed${seed}
    local dir=${OUTPUT}/evaluation/${trainer}/${cfg}_${SHOTS}shots/${dataset}/seed${seed}
    if results_exist "$dir"; then
        return 0
    fi
    require_model_dir "$model_dir" "$train_hint"
    protocol_flags "$trainer" "$cfg" "$dataset" "$seed" "$dir"
    run_train "${PROTOCOL_FLAGS[@]}" \
        --model-dir "$model_dir" \
        --load-epoch "$load_epoch" \
        --eval-only
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
