"""Train or evaluate a prompt-learning method on CLIP.

The command line is the one of the CoOp / MaPLe / BMIP repositories, so their
scripts run unchanged; ``--device`` and ``--best`` are additions.

Config precedence (later wins): Dassl defaults, every trainer's defaults,
``--dataset-config-file``, ``--config-file``, the named CLI arguments, then the
trailing ``KEY VALUE`` pairs.

Launched by ``torchrun --nproc_per_node=N train.py ...`` it trains data-parallel
(DistributedDataParallel; see "Several GPUs (torchrun)" in docs/RUN.md).
"""
import difflib
import os
import sys
import tempfile
import traceback

import torch

import datasets  # noqa: F401  (registers the benchmark datasets)
import trainers  # noqa: F401  (registers the trainers)
from dassl import run_args
from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.engine.trainer import select_device
from dassl.utils import (collect_env_info, set_deterministic, set_random_seed, setup_logger,
                         write_to_log_file)
from dassl.utils import distributed as dist_utils
from dassl.utils.run_lock import EXIT_LOCKED, OutputDirInUse, lock_output_dir


class ConfigError(ValueError):
    """A bad config file, key or value given by the user."""


def _all_keys(node, prefix=""):
    for k, v in node.items():
        full = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _all_keys(v, full + ".")
        else:
            yield full


def _unknown_key_error(cfg, err, source):
    """Turn yacs' KeyError into a one-line message naming the source and close keys."""
    msg = str(err.args[0]) if err.args else str(err)
    key = msg.split(":", 1)[-1].strip() if "Non-existent config key" in msg else msg
    close = difflib.get_close_matches(key, list(_all_keys(cfg)), n=3, cutoff=0.6)
    hint = f" (did you mean: {', '.join(close)}?)" if close else ""
    return ConfigError(f"{source}: unknown config key {key}{hint}")


def _config_file_error(path, err):
    """``path:line:column: cause`` for a YAML syntax error (1-based, as editors count), else
    ``path: first line of the error``."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is not None and problem:
        context = getattr(err, "context", None)
        cause = f"{problem} ({context})" if context and context not in problem else problem
        return f"{path}:{mark.line + 1}:{mark.column + 1}: {cause}"
    text = str(err).strip()
    return f"{path}: {text.splitlines()[0] if text else type(err).__name__}"


def reset_cfg(cfg, args):
    """Apply the named command-line arguments to the config."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head
    if args.device:
        cfg.DEVICE = args.device
    if args.deterministic:
        cfg.DETERMINISTIC = True


def setup_cfg(args):
    """Build the frozen config from defaults, files, arguments and opts."""
    cfg = get_cfg_default()
    trainers.add_trainer_configs(cfg)
    for label, path in (("--dataset-config-file", args.dataset_config_file),
                        ("--config-file", args.config_file)):
        if not path:
            continue
        if not os.path.isfile(path):
            raise ConfigError(f"{label}: file not found: {path}")
        try:
            cfg.merge_from_file(path)
        except KeyError as err:
            raise _unknown_key_error(cfg, err, path) from None
        except Exception as err:  # yaml syntax errors, type mismatches
            raise ConfigError(_config_file_error(path, err)) from None
    reset_cfg(cfg, args)
    flags = [o for o in args.opts if o.startswith("--")]
    if flags:
        raise ConfigError(f"{flags[0]} comes after the KEY VALUE opts; put every --flag before them")
    if args.opts and len(args.opts) % 2:
        raise ConfigError(f"command-line opts must be KEY VALUE pairs, got: {' '.join(args.opts)}")
    try:
        cfg.merge_from_list(args.opts)
    except KeyError as err:
        raise _unknown_key_error(cfg, err, "command line") from None
    except AssertionError as err:  # yacs asserts "Non-existent key: X" for an opt
        if "Non-existent key" not in str(err):
            raise ConfigError(f"command line: {str(err).splitlines()[0]}") from None
        raise _unknown_key_error(cfg, KeyError(str(err).replace("Non-existent key", "Non-existent config key")),
                                 "command line") from None
    except Exception as err:
        raise ConfigError(f"command line: {str(err).splitlines()[0]}") from None
    try:
        trainers.apply_backbone_preprocessing(cfg)  # INPUT.* of an openclip: backbone (docs/BACKBONES.md)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME) if cfg.TRAINER.NAME in TRAINER_REGISTRY else None
    if hasattr(trainer_cls, "adjust_cfg"):  # trainer-specific settings (CoPrompt's per-dataset values)
        trainer_cls.adjust_cfg(cfg)
    cfg.freeze()
    return cfg


def check_output_dir(path):
    """Create the output directory if needed and check that a file can be written in it.

    Runs before any data is read or anything trained, so that an unusable ``--output-dir``
    (a read-only or full file system, a path through a regular file) fails at once with a
    ``ConfigError`` naming it, instead of after the first epoch when the checkpoint is saved.
    """
    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"output dir {path} is not writable: {err.strerror or err}") from None


def print_args(args, cfg):
    print("***************\n** Arguments **\n***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************\n** Config **\n************")
    print(cfg)


def start_distributed(cfg):
    """Under torchrun: join the process group (NCCL for CUDA, gloo for the CPU) and keep
    stdout for rank 0. Does nothing for a plain ``python train.py``."""
    if not dist_utils.launched_by_torchrun():
        return
    dist_utils.init_distributed(select_device(cfg).type)
    dist_utils.silence_stdout_on_other_ranks()


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only and args.model_dir and not os.path.isdir(args.model_dir):
        raise FileNotFoundError(f"--model-dir {args.model_dir} does not exist")
    if cfg.RESUME and not os.path.isdir(cfg.RESUME):
        # Named explicitly, so a typo must not silently start from scratch (the automatic resume
        # of --output-dir needs no flag).
        source = "--resume" if args.resume else "RESUME"
        raise ConfigError(f"{source} {cfg.RESUME}: no such directory (give a previous run's output dir, or leave "
                          f"{source} out: a run resumes from its own --output-dir automatically)")
    start_distributed(cfg)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    elif dist_utils.is_distributed():
        # Every rank must draw the same few-shot subset: rank 0 picks the seed for all.
        seed = dist_utils.shared_seed(cfg.SEED)
        print(f"Setting seed shared by all processes: {seed} (SEED < 0 picks it at random)")
        set_random_seed(seed)
    if cfg.MODEL.INIT_SEED >= 0:
        # BMIP's rule: torch's generator (initialisation, shuffling) follows
        # INIT_SEED, python/numpy (few-shot sampling) follow SEED.
        print(f"Setting fixed init seed: {cfg.MODEL.INIT_SEED}")
        torch.manual_seed(cfg.MODEL.INIT_SEED)
        torch.cuda.manual_seed_all(cfg.MODEL.INIT_SEED)
    if dist_utils.is_main_process():
        check_output_dir(cfg.OUTPUT_DIR)
        if cfg.OUTPUT_DIR:
            # Before anything is written there (log.txt included): one run per output dir.
            lock_output_dir(cfg.OUTPUT_DIR)
        setup_logger(cfg.OUTPUT_DIR)
    if dist_utils.is_distributed():
        print(f"Distributed data-parallel: {dist_utils.world_size()} processes "
              f"({torch.distributed.get_backend()}); DATALOADER.TRAIN_X.BATCH_SIZE "
              f"{cfg.DATALOADER.TRAIN_X.BATCH_SIZE} is the global batch")
    set_deterministic(cfg.DETERMINISTIC)
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    trainer.run_arguments = run_args.defining_arguments(args)  # recorded in results.json
    _CURRENT_RUN["trainer"] = trainer
    if args.eval_only:
        trained = [n for n in trainer.get_model_names() if trainer._optims[n] is not None]
        if not args.model_dir and trained:
            raise ConfigError(
                f"--eval-only needs --model-dir: trainer {cfg.TRAINER.NAME} has trainable weights "
                f"({', '.join(trained)}) and would be evaluated untrained"
            )
        epoch = None if args.best else args.load_epoch
        trainer.load_model(args.model_dir, epoch=epoch)
        trainer.set_aside_previous_results()
        trainer.test()
        trainer.write_results()
        return
    if not args.no_train:
        trainer.train()


def build_parser():
    """The CoOp/MaPLe/BMIP command line (defined in :mod:`dassl.run_args`)."""
    return run_args.build_parser(__doc__.splitlines()[0])


# Errors caused by what the user gave us: reported as one line, exit code 2.
# FloatingPointError: a diverged run (non-finite loss), reported with its epoch and batch.
USER_ERRORS = (ConfigError, OSError, KeyError, ValueError, RuntimeError, FloatingPointError)


def cli(argv=None):
    """Entry point: run ``main`` and turn input errors into a one-line message."""
    args = build_parser().parse_args(argv)
    finished = False
    try:
        main(args)
        finished = True
    except OutputDirInUse as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        if args.debug or os.environ.get("PROMPTCLIP_DEBUG"):
            raise
        write_to_log_file(traceback.format_exc())
        print(f"\ninterrupted: {interrupted_summary()}", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if args.debug or os.environ.get("PROMPTCLIP_DEBUG"):
            raise
        log = write_to_log_file(traceback.format_exc())
        where = f" (traceback in {log})" if log else ""
        who = f" (rank {dist_utils.rank()})" if not dist_utils.is_main_process() else ""
        print(f"error{who}: {error_line(err)}{where}", file=sys.stderr)
        return 2
    finally:
        # A finished rank waits for the others before leaving the group; a failed one leaves at once.
        dist_utils.destroy_distributed(wait_for_peers=finished)
    return 0


_CURRENT_RUN = {}


def interrupted_summary():
    """What an interrupted run kept on disk and how to go on, in one line."""
    trainer = _CURRENT_RUN.get("trainer")
    if trainer is None or not getattr(trainer, "output_dir", None):
        return "stopped before training started; nothing was saved"
    out = trainer.output_dir
    if getattr(trainer, "last_results", None) and os.path.isfile(os.path.join(out, "results.json")):
        return f"the run had finished; its results are in {out}"
    epoch = trainer.latest_checkpoint_epoch(out)
    if not epoch:
        return f"no epoch had finished, so no checkpoint was saved in {out}; the same command starts over"
    return (f"kept the checkpoint of the last finished epoch ({epoch}) in {out}; run the same command "
            "again to resume from it")


def error_line(err):
    """One line that names the culprit of ``err``.

    DataLoader workers re-raise as "Caught X in DataLoader worker process N."
    followed by the original traceback, whose last line has the message.
    """
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if lines[0].startswith("Caught ") and len(lines) > 1:
        return lines[-1]
    return lines[0]


if __name__ == "__main__":
    # Not sys.exit: under torchrun the interpreter's teardown races gloo's threads (exit_process).
    dist_utils.exit_process(cli())
