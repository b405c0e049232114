"""Does train.py's --output-dir hold a finished run of these same arguments? (scripts/common.sh)

Usage: python scripts/finished_run.py TRAIN_PY_ARGUMENT...

Exit 0: yes; prints the per-run scripts' skip line. Exit 1: no finished run there. Exit 2: a
finished run of other arguments (another EXTRA_OPTS, LOADEP, backbone, ...), whose results would
otherwise stand in for this run's: a one-line error naming the arguments that differ. Arguments that
only say where or how a run executes (--root, --device, DATALOADER.NUM_WORKERS, ...) may differ.
A results.json written before runs recorded their arguments counts as the same run.
Needs no torch, so a resumed sweep skips its finished runs quickly.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dassl.run_args import argument_differences, build_parser, defining_arguments  # noqa: E402


def main(argv):
    args = build_parser().parse_args(argv)
    path = os.path.join(args.output_dir, "results.json")
    if not args.output_dir or not os.path.isfile(path):
        return 1
    try:
        with open(path) as handle:
            saved = json.load(handle)
    except (OSError, ValueError) as err:
        print(f"error: {path} is not a readable results file ({err}); move it away to run again", file=sys.stderr)
        return 2
    if not isinstance(saved, dict):
        print(f"error: {path} is not a results file (a JSON object); move it away to run again", file=sys.stderr)
        return 2
    if saved.get("complete") is False:
        return 1
    recorded = saved.get("arguments")
    if recorded is not None:
        changed = argument_differences(recorded, defining_arguments(args))
        if changed:
            print(f"error: {args.output_dir} holds a finished run of other arguments ({'; '.join(changed[:4])}"
                  f"{'; ...' if len(changed) > 4 else ''}); set another OUTPUT, or move that dir away to rerun",
                  file=sys.stderr)
            return 2
    print(f"Results are available in {args.output_dir}. Skip this job")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as err:  # never "not finished" by accident: that would rerun over a finished run
        print(f"error: cannot compare with the finished run's arguments: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)
