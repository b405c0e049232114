"""train.py's command line, and which of its arguments define a run (imports neither torch nor yacs).

``scripts/finished_run.py`` imports this to decide, without starting torch, whether an output dir
already holds a finished run of the same arguments.
"""
import argparse
import os

# Config keys that say how or where a run executes, not what it computes: a resumed or skipped run
# may differ in these. (A training run's checkpoints are also valid for any TEST.* setting; see
# dassl.engine.trainer.training_config.)
RUN_ONLY_KEYS = ("OUTPUT_DIR", "RESUME", "DEVICE", "USE_CUDA", "DETERMINISTIC", "VERBOSE", "DATASET.ROOT",
                 "DATALOADER.NUM_WORKERS", "TRAIN.PRINT_FREQ", "TRAIN.CHECKPOINT_FREQ",
                 "TEST.FEATURE_CACHE", "TEST.FEATURE_CACHE_DIR")  # the cache gives identical logits
# train.py flags of the same kind: the data folder and the output dir may move between machines.
# (--model-dir is recorded relative to the output dir, so a moved sweep tree still matches.)
RUN_ONLY_FLAGS = ("root", "output_dir", "resume", "device", "deterministic", "debug")


def is_run_only_key(key, run_only=RUN_ONLY_KEYS):
    """Whether config ``key`` is one of ``run_only`` (an entry ending in "." covers its subtree)."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in run_only)


def build_parser(description="Train or evaluate a prompt-learning method on CLIP."):
    """The CoOp/MaPLe/BMIP command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", type=str, default="", help="path to the datasets folder")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="",
                        help="checkpoint directory from which training resumes")
    parser.add_argument("--seed", type=int, default=-1, help="only a value >= 0 fixes the seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="method config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="dataset config file")
    parser.add_argument("--trainer", type=str, default="", help="name of the trainer")
    parser.add_argument("--backbone", type=str, default="", help="CLIP backbone name or checkpoint path")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="",
                        help="load the model from this directory for --eval-only")
    parser.add_argument("--load-epoch", type=int, help="load the weights of this epoch for evaluation")
    parser.add_argument("--best", action="store_true",
                        help="with --eval-only: load model-best.pth.tar from --model-dir")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--device", type=str, default="", help="cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic GPU kernels (sets DETERMINISTIC; slower on a GPU)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for input errors")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options with KEY VALUE pairs")
    return parser


def defining_arguments(args):
    """The arguments of a parsed train.py command line that decide what the run computes:
    ``{flag: value, ..., "opts": {KEY: VALUE}}`` with the flags that differ from their defaults
    (JSON-serialisable; results.json keeps it)."""
    defaults = vars(build_parser().parse_args([]))
    defining = {name: value for name, value in sorted(vars(args).items())
                if name not in RUN_ONLY_FLAGS and name != "opts" and value != defaults.get(name)}
    if defining.get("model_dir"):
        defining["model_dir"] = os.path.relpath(os.path.abspath(args.model_dir), os.path.abspath(args.output_dir or "."))
    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    pairs = dict(zip(opts[0::2], opts[1::2]))
    if len(opts) % 2:
        pairs[opts[-1]] = None
    defining["opts"] = {k: v for k, v in pairs.items() if not is_run_only_key(k)}
    return defining


def argument_differences(saved, current):
    """``["NAME: saved -> current", ...]`` between two :func:`defining_arguments` records. Both are
    read with today's run-only lists and flag defaults, so a record written before a flag was added
    or a key became run-only still compares equal when nothing that matters changed."""
    defaults = vars(build_parser().parse_args([]))
    flat = []
    for record in (saved, current):
        entries = {f"--{k.replace('_', '-')}": v for k, v in record.items()
                   if k != "opts" and k not in RUN_ONLY_FLAGS and v != defaults.get(k)}
        entries.update({k: v for k, v in (record.get("opts") or {}).items() if not is_run_only_key(k)})
        flat.append(entries)

    def shown(entries, key):
        if key in entries:
            return entries[key]
        flag = key[2:].replace("-", "_") if key.startswith("--") else None
        return defaults[flag] if flag in defaults else "<unset>"

    keys = sorted(set(flat[0]) | set(flat[1]))
    return [f"{k}: {shown(flat[0], k)} -> {shown(flat[1], k)}" for k in keys if shown(flat[0], k) != shown(flat[1], k)]
