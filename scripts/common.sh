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
