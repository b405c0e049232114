"""The training loop: TrainerBase (models, checkpoints, loop), SimpleTrainer
(data, evaluation, best-val selection, results) and TrainerX (labelled data).

The loop itself only steps; side tasks (LR schedule, checkpointing, evaluation,
logging) hang off ``before_*``/``after_*`` hooks so subclasses override one
concern at a time, as in Dassl.

Under torchrun (a process group is initialised, see ``dassl.utils.distributed``) every
rank runs the same loop; only rank 0 writes files (checkpoints, results.json,
tensorboard), followed by a barrier where other ranks may read what it wrote, and
evaluation gathers the predictions of all ranks before computing metrics. Without a
process group none of this code runs.
"""
import datetime
import os
import os.path as osp
import random
import re
import time
from collections import OrderedDict
from contextlib import nullcontext

import numpy as np
import torch
from tqdm import tqdm

from dassl.run_args import RUN_ONLY_KEYS, is_run_only_key
from dassl.data import DataManager
from dassl.evaluation import build_evaluator
from dassl.utils import distributed as dist_utils
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    load_checkpoint,
    load_released_checkpoint,
    mkdir_if_missing,
    progress_stream,
    read_json,
    remove_stale_temp_files,
    save_checkpoint,
    set_random_seed,
    tolist_if_not,
    write_json,
)
from dassl.utils.faults import fault_point
from dassl.utils.run_lock import lock_output_dir

_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")
# Extra key of the per-rank random streams, so they never coincide with the (seed, epoch)
# stream of the batch order.
_AUGMENTATION_STREAM = 1


def capture_rng_state():
    """Snapshot every RNG the training loop draws from (python, numpy, torch, cuda).

    The result holds only tensors and plain python data so that it loads with
    ``torch.load(weights_only=True)``.
    """
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def replacement_mask(batch):
    """Bool tensor marking the items of ``batch`` that stand in for an unreadable image
    (``DATALOADER.SKIP_BAD_IMAGES``), or None when that option is off."""
    flags = batch.get("bad_images_skipped") if isinstance(batch, dict) else None
    return None if flags is None else torch.as_tensor(flags).reshape(-1).bool()


def total_skipped(count):
    """``count`` summed over all processes (one all-reduce under torchrun)."""
    if dist_utils.is_distributed():
        return int(dist_utils.all_reduce(torch.tensor([count], dtype=torch.int64)).item())
    return count


def list_epoch_checkpoints(model_dir):
    """Sorted epochs ``N`` for which ``model_dir/model.pth.tar-N`` exists."""
    if not osp.isdir(model_dir):
        return []
    epochs = []
    for fname in os.listdir(model_dir):
        match = _EPOCH_FILE.match(fname)
        if match:
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def training_config(cfg):
    """Flat ``{key: repr(value)}`` of the config keys that define a training run: all but the
    run-only ones and TEST.* (how it is evaluated), which a resumed run may change."""
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            full = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, full + ".")
            elif not is_run_only_key(full, RUN_ONLY_KEYS + ("TEST.",)):
                flat[full] = repr(value)

    walk(cfg, "")
    return flat


def config_differences(saved, current):
    """``["KEY: saved -> current", ...]`` for the keys whose values differ."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k, '<unset>')} -> {current.get(k, '<unset>')}"
            for k in keys if saved.get(k) != current.get(k)]


def _subsample_from_log(path):
    """``DATASET.SUBSAMPLE_CLASSES`` from the config dump in a Dassl ``log.txt`` (or None)."""
    try:
        with open(path, errors="replace") as handle:
            in_dataset = False
            for line in handle:
                stripped = line.strip()
                if not line.startswith(" ") and stripped.endswith(":"):
                    in_dataset = stripped == "DATASET:"
                elif in_dataset and stripped.startswith("SUBSAMPLE_CLASSES:"):
                    return stripped.split(":", 1)[1].strip().strip("'\"") or None
    except OSError:
        return None
    return None


def trained_subsample(checkpoint, directory):
    """Which classes (``DATASET.SUBSAMPLE_CLASSES``: "all", "base", "new") the model in
    ``checkpoint`` was trained on, or None when nothing records it.

    Read from the training config stored in our checkpoints, else from the ``results.json`` or
    the ``log.txt`` config dump (ours or the original Dassl's) beside the weights in ``directory``.
    """
    saved = ((checkpoint.get("trainer_state") or {}).get("config") or {}).get("DATASET.SUBSAMPLE_CLASSES")
    if isinstance(saved, str):
        return saved.strip("'\"")
    results = osp.join(directory, "results.json")
    if osp.isfile(results):
        try:
            value = read_json(results).get("subsample_classes")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
    return _subsample_from_log(osp.join(directory, "log.txt"))


class TrainerBase:
    """Base class of every trainer: owns the registered models with their
    optimizers/schedulers, checkpoint IO and the epoch loop.

    Contract: a subclass registers each trainable module with
    :meth:`register_model`; everything registered is saved, resumed and loaded
    by name (``<output_dir>/<name>/model.pth.tar-<epoch>``). ``state_dict()``
    holds the loop state that is not in a model (RNG streams, best result) so
    that a resumed run continues bit-identically on the CPU.
    """

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None
        self.best_result = -np.inf
        self.epochs_without_improvement = 0
        self.stop_training = False
        # Epoch count of the weights currently in the models (None: untrained).
        self.model_epoch = None

    # ------------------------------------------------------------------ models
    def register_model(self, name="model", model=None, optim=None, sched=None):
        """Register ``model`` (with its optimizer and scheduler) under ``name``."""
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if name in self._models:
            raise KeyError(f'a model named "{name}" is already registered')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        """All registered names, or ``names`` after checking they exist."""
        real = list(self._models.keys())
        if names is None:
            return real
        names = tolist_if_not(names)
        for name in names:
            if name not in real:
                raise KeyError(f'no registered model "{name}"; registered: {real}')
        return names

    def set_model_mode(self, mode="train", names=None):
        """Put the registered models in train or eval mode."""
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f"unknown model mode {mode!r}")

    def update_lr(self, names=None):
        """Step the LR schedulers (Dassl steps once per epoch)."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def get_current_lr(self, names=None):
        """Learning rate of the first parameter group of the first model."""
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    # ------------------------------------------------------------ loop state
    def state_dict(self):
        """Loop state outside the models: RNG streams, best validation result and
        the training config the checkpoint belongs to."""
        state = {"rng": capture_rng_state(), "best_result": float(self.best_result),
                 "epochs_without_improvement": int(self.epochs_without_improvement),
                 "stop_training": bool(self.stop_training)}
        if getattr(self, "cfg", None) is not None:
            state["config"] = training_config(self.cfg)
        return state

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` captured."""
        if "rng" in state:
            restore_rng_state(state["rng"])
        if "best_result" in state:
            self.best_result = state["best_result"]
        self.epochs_without_improvement = state.get("epochs_without_improvement", 0)
        self.stop_training = state.get("stop_training", False)

    # ------------------------------------------------------------ checkpoints
    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        """Save every registered model to ``directory/<name>/`` (atomic writes).

        ``epoch`` is the 0-based epoch just finished; files carry ``epoch + 1``
        as in Dassl. The loop state is stored beside the first model's weights.

        Under torchrun only rank 0 writes (the weights are the same on every rank), and
        every rank then waits for it, so that a rank that reads a checkpoint next
        (``load_model`` of the best one) finds the complete file.
        """
        if dist_utils.is_main_process():
            self._write_checkpoints(epoch, directory, is_best, val_result, model_name)
        dist_utils.barrier()

    def _write_checkpoints(self, epoch, directory, is_best, val_result, model_name):
        trainer_state = self.state_dict()
        for i, name in enumerate(self.get_model_names()):
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
            }
            if i == 0:
                state["trainer_state"] = trainer_state
            save_checkpoint(state, osp.join(directory, name), is_best=is_best, model_name=model_name)

    def latest_checkpoint_epoch(self, directory):
        """Largest epoch that has a checkpoint for every registered model, or 0."""
        common = None
        for name in self.get_model_names():
            epochs = set(list_epoch_checkpoints(osp.join(directory, name)))
            common = epochs if common is None else common & epochs
        return max(common) if common else 0

    def resume_model_if_exist(self, directory):
        """Resume models, optimizers, schedulers and loop state from the latest
        epoch checkpoint in ``directory``; return the epoch to start from (0 if none).
        """
        # Under torchrun rank 0's view decides, so that all ranks resume from the same epoch
        # (a rank that cannot read that file then fails loudly instead of diverging).
        epoch = dist_utils.broadcast_int(self.latest_checkpoint_epoch(directory))
        if epoch == 0:
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        first = osp.join(directory, self.get_model_names()[0], f"model.pth.tar-{epoch}")
        saved_cfg = (load_checkpoint(first).get("trainer_state") or {}).get("config")
        if saved_cfg is not None and getattr(self, "cfg", None) is not None:
            changed = config_differences(saved_cfg, training_config(self.cfg))
            if changed:
                raise RuntimeError(
                    f"{directory} holds checkpoints of a different config ({'; '.join(changed[:4])}); "
                    "use a new --output-dir, or delete its checkpoints to start over"
                )
        trainer_state = None
        for name in self.get_model_names():
            path = osp.join(directory, name, f"model.pth.tar-{epoch}")
            print(f'Loading checkpoint from "{path}"')
            ckpt = load_checkpoint(path)
            self._load_weights(name, ckpt["state_dict"], path)
            if self._optims[name] is not None and ckpt.get("optimizer") is not None:
                self._optims[name].load_state_dict(ckpt["optimizer"])
            if self._scheds[name] is not None and ckpt.get("scheduler") is not None:
                self._scheds[name].load_state_dict(ckpt["scheduler"])
            trainer_state = trainer_state or ckpt.get("trainer_state")
        if trainer_state is not None:
            self.load_state_dict(trainer_state)
        self.model_epoch = epoch
        print(f"Previous epoch: {epoch}")
        return epoch

    def model_file_path(self, directory, name, epoch=None):
        """Path of the checkpoint :meth:`load_model` reads for ``name``."""
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        return osp.join(directory, name, model_file)

    def load_model(self, directory, epoch=None):
        """Load weights for evaluation: ``model-best.pth.tar`` by default,
        ``model.pth.tar-<epoch>`` when ``epoch`` is given.

        A missing file raises ``FileNotFoundError`` naming the path (and the
        epochs that do exist); it never falls back to untrained weights.
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            path = self.model_file_path(directory, name, epoch)
            if not osp.exists(path):
                present = list_epoch_checkpoints(osp.join(directory, name))
                hint = f"; epochs present: {present}" if present else ""
                raise FileNotFoundError(f'Model not found at "{path}"{hint}')
            ckpt = load_released_checkpoint(path)
            val = ckpt.get("val_result")
            val_txt = f", val_result={val:.1f}" if isinstance(val, (int, float)) else ""
            print(f'Load "{path}" to {name} (epoch={ckpt.get("epoch")}{val_txt})')
            self.model_epoch = ckpt.get("epoch")
            self._load_weights(name, ckpt["state_dict"], path)
            if name == self.get_model_names()[0]:
                self.trained_classes = trained_subsample(ckpt, directory)
        self.after_load_model()

    def after_load_model(self):
        """Called once :meth:`load_model` has loaded every model (``trained_classes`` is set)."""

    def _load_weights(self, name, state_dict, path):
        """Load ``state_dict`` into model ``name``; subclasses may map keys."""
        self._models[name].load_state_dict(state_dict)

    # ------------------------------------------------------------- tensorboard
    def init_writer(self, log_dir):
        """Start a TensorBoard writer when tensorboard is installed (optional; rank 0 only)."""
        if self._writer is not None or not dist_utils.is_main_process():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except (ImportError, ModuleNotFoundError):
            print("TensorBoard is not installed: scalars are not written (pip install tensorboard)")
            return
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        """Flush and close the TensorBoard writer, if any."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag, scalar_value, global_step=None):
        """Write a scalar when a writer exists; a no-op otherwise."""
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # -------------------------------------------------------------- the loop
    def train(self, start_epoch, max_epoch):
        """Run epochs ``start_epoch .. max_epoch-1`` between before/after_train."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.stop_training = False
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            if self.stop_training:
                break
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self, split=None):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    # ---------------------------------------------------------- optimisation
    def detect_anomaly(self, loss):
        """Stop the run on a non-finite loss, naming where it happened."""
        if not torch.isfinite(loss).all():
            where = ""
            if hasattr(self, "epoch") and hasattr(self, "batch_idx"):
                where = f" at epoch {self.epoch + 1}, batch {self.batch_idx + 1}"
            raise FloatingPointError(f"Loss is infinite or NaN{where}")

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss):
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss, names=None):
        """zero_grad, backward (with the non-finite check), optimizer step."""
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


def select_device(cfg):
    """``cfg.DEVICE`` when set (e.g. "cpu", "cuda:1"), else CUDA if available and allowed.

    Under torchrun a CUDA device is always ``cuda:LOCAL_RANK`` (one GPU per process); an
    explicit ``DEVICE`` still decides between CPU and CUDA.
    """
    requested = str(cfg.get("DEVICE", "") or "")
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"DEVICE={requested!r} was requested but CUDA is not available")
    elif torch.cuda.is_available() and cfg.USE_CUDA:
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and dist_utils.is_distributed():
        device = torch.device("cuda", dist_utils.local_rank())
    return device


class SimpleTrainer(TrainerBase):
    """A trainer with data, an evaluator, best-val model selection and a
    machine-readable ``results.json`` for the final test.

    Subclasses implement :meth:`build_model` (register the trainable modules)
    and :meth:`forward_backward`.
    """

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        self.device = select_device(cfg)
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.time_start = time.time()
        self.last_results = None
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)

    def check_cfg(self, cfg):
        """Validate trainer-specific config values (optional)."""

    def build_data_loader(self):
        """Create the data attributes (dm, loaders, num_classes, lab2cname)."""
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self):
        raise NotImplementedError("a trainer must implement build_model() and register its models")

    def train(self):
        super().train(self.start_epoch, self.max_epoch)

    def after_load_model(self):
        """Open-world metrics without a flag: a model trained on the base classes and tested on
        all classes is BMIP's open-world protocol, so the evaluator reports base/new/HM too
        (``TEST.OPENWORLD_METRICS`` True or False overrides this)."""
        trained = getattr(self, "trained_classes", None)
        if (self.cfg.TEST.OPENWORLD_METRICS is None and trained == "base"
                and self.cfg.DATASET.SUBSAMPLE_CLASSES == "all" and not self.evaluator.openworld):
            self.evaluator.openworld = True
            print("The model was trained on the base classes and is tested on all classes: reporting the "
                  "open-world metrics (base_accuracy, new_accuracy, hm); TEST.OPENWORLD_METRICS False turns "
                  "them off")

    def set_aside_previous_results(self):
        """Rename an earlier results.json to results.json.prev, so that only a run
        that finishes marks the directory complete (sweeps skip complete runs)."""
        path = osp.join(self.output_dir, "results.json")
        if dist_utils.is_main_process() and osp.exists(path):
            os.replace(path, path + ".prev")
            print(f"Moved the previous {path} to results.json.prev")

    def remove_interrupted_writes(self):
        """Delete the temporary files a killed run left in the output directory and the
        model folders (see ``remove_stale_temp_files``; they are never loaded either way).

        Only under the output dir's run lock (taken here if train.py has not taken it), so a
        live run's temporary files are never touched: its directory is locked.
        """
        if not dist_utils.is_main_process():
            return
        if self.output_dir:
            mkdir_if_missing(self.output_dir)
            lock_output_dir(self.output_dir)
        folders = [self.output_dir] + [osp.join(self.output_dir, name) for name in self.get_model_names()]
        removed = [path for folder in folders for path in remove_stale_temp_files(folder)]
        if removed:
            print(f"Removed {len(removed)} temporary file(s) left by an interrupted run: {', '.join(removed)}")

    def before_train(self):
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.remove_interrupted_writes()
        self.start_epoch = self.resume_model_if_exist(directory)
        self.set_aside_previous_results()
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_epoch(self):
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.epochs_without_improvement = 0
                self.save_model(self.epoch, self.output_dir, val_result=curr_result,
                                model_name="model-best.pth.tar")
            else:
                self.epochs_without_improvement += 1
            self.check_early_stopping()

        # Every epoch leaves a resumable checkpoint and removes the previous one
        # unless Dassl's CHECKPOINT_FREQ rule keeps it: a finished run has exactly
        # Dassl's files, an interrupted one loses less than an epoch.
        self.save_model(self.epoch, self.output_dir)
        self.model_epoch = self.epoch + 1
        previous = self.epoch  # 1-based file suffix of the epoch before this one
        if dist_utils.is_main_process() and previous >= 1 and not (freq > 0 and previous % freq == 0):
            for name in self.get_model_names():
                stale = osp.join(self.output_dir, name, f"model.pth.tar-{previous}")
                if osp.exists(stale):
                    os.remove(stale)

    def check_early_stopping(self):
        """With TRAIN.EARLY_STOPPING, stop once the validation result has not
        improved for PATIENT_COUNT evaluations (never before EARLY_STOPPING_MIN_EPOCHS)."""
        train = self.cfg.TRAIN
        if (train.EARLY_STOPPING and self.epochs_without_improvement >= train.PATIENT_COUNT
                and self.epoch + 1 >= train.EARLY_STOPPING_MIN_EPOCHS and self.epoch + 1 < self.max_epoch):
            print(f"Early stopping after epoch {self.epoch + 1}: no validation improvement for "
                  f"{self.epochs_without_improvement} epochs (best {self.best_result:.2f})")
            self.stop_training = True

    def after_train(self):
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
            self.write_results()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def evaluation_context(self):
        """Context entered around a whole evaluation pass.

        Trainers use it for work done once per evaluation instead of once per
        batch (e.g. encoding the class prompts)."""
        return nullcontext()

    @torch.no_grad()
    def test(self, split=None):
        """Evaluate on ``split`` ("val" or "test"); return the first metric.

        The full metrics are kept in ``self.last_results`` for results.json. Under torchrun
        each rank evaluates its shard and the evaluator then gathers every rank's
        predictions in dataset order, so all ranks compute the metrics of the whole split.
        """
        self.set_model_mode("eval")
        self.evaluator.reset()
        split, data_loader = self.split_loader(split)
        print(f"Evaluate on the *{split}* set")
        distributed = dist_utils.is_distributed()
        positions = []  # dataset index of every sample this rank evaluated (distributed only)
        skipped = 0
        with self.evaluation_context():
            for self.batch_idx, batch in enumerate(
                tqdm(data_loader, desc=f"eval {split}", file=progress_stream(), dynamic_ncols=True,
                     disable=progress_stream() is None, leave=False)
            ):
                fault_point("eval_batch")
                inputs, label = self.parse_batch_test(batch)
                index = torch.as_tensor(batch["index"], dtype=torch.int64).reshape(-1)
                replaced = replacement_mask(batch)
                if replaced is not None and replaced.any():
                    # A stand-in for an unreadable image is the next readable item, which is
                    # evaluated in its own place too: leave it out so that each readable image
                    # counts once and the unreadable ones not at all.
                    skipped += int(replaced.sum())
                    keep = ~replaced
                    if not keep.any():
                        continue
                    inputs, label, index = inputs[keep.to(inputs.device)], label[keep.to(label.device)], index[keep]
                output = self.model_inference(inputs)
                self.evaluator.process(output, label)
                if distributed:
                    positions.append(index)
        skipped = total_skipped(skipped)
        if skipped:
            print(f"DATALOADER.SKIP_BAD_IMAGES: skipped {skipped} unreadable image(s) while evaluating on {split}; "
                  f"the metrics leave them out")
        if distributed:
            self.evaluator.gather_from_ranks(torch.cat(positions) if positions else torch.zeros(0, dtype=torch.int64))
        return self.finish_test(split)

    def split_loader(self, split=None):
        """``(split, loader)`` an evaluation of ``split`` reads: "val" when asked and present,
        otherwise "test" (``None`` means ``TEST.SPLIT``)."""
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            return "val", self.val_loader
        return "test", self.test_loader

    def finish_test(self, split):
        """Compute the evaluator's metrics of what it processed, log them; return the first."""
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        self.last_results = {"split": split, "metrics": dict(results)}
        return list(results.values())[0]

    def results_summary(self):
        """The dict written to results.json (extend in subclasses if needed)."""
        cfg = self.cfg
        metrics = dict(self.last_results["metrics"]) if self.last_results else {}
        for attr, key in (("_total", "total"), ("_correct", "correct")):
            if hasattr(self.evaluator, attr):
                metrics.setdefault(key, int(getattr(self.evaluator, attr)))
        summary = {
            "complete": True,
            "trainer": cfg.TRAINER.NAME,
            "dataset": cfg.DATASET.NAME,
            "backbone": cfg.MODEL.BACKBONE.NAME,
            "seed": int(cfg.SEED),
            "num_shots": int(cfg.DATASET.NUM_SHOTS),
            "subsample_classes": cfg.DATASET.SUBSAMPLE_CLASSES,
            "split": self.last_results["split"] if self.last_results else None,
            "metrics": metrics,
            "epoch": self.model_epoch,
            "max_epoch": int(self.max_epoch),
            "final_model": cfg.TEST.FINAL_MODEL,
            "num_classes": int(self.num_classes),
            "wall_time_s": round(time.time() - self.time_start, 3),
            "output_dir": osp.abspath(self.output_dir),
            "device": str(self.device),
            "config": _cfg_to_dict(cfg),
        }
        if getattr(self, "run_arguments", None) is not None:
            summary["arguments"] = self.run_arguments  # scripts/finished_run.py compares them
        if getattr(self, "trained_classes", None) is not None:
            summary["trained_classes"] = self.trained_classes  # what the loaded model was trained on
        if dist_utils.is_distributed():
            summary["world_size"] = dist_utils.world_size()
        return summary

    def write_results(self, extra=None):
        """Write ``results.json`` atomically (rank 0 only); it marks the run as complete."""
        path = osp.join(self.output_dir, "results.json")
        if not dist_utils.is_main_process():
            return path
        summary = self.results_summary()
        if extra:
            summary.update(extra)
        mkdir_if_missing(self.output_dir)
        write_json(summary, path)
        print(f"Results written to {path}")
        return path

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)


def _cfg_to_dict(node):
    """A yacs CfgNode as plain nested dicts (JSON-serialisable)."""
    if isinstance(node, dict):
        return {k: _cfg_to_dict(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return [_cfg_to_dict(v) for v in node]
    return node


class TrainerX(SimpleTrainer):
    """A trainer on labelled data only (``train_loader_x``).

    Every ``TRAIN.PRINT_FREQ`` batches it prints Dassl's progress line
    (``epoch [e/E] batch [b/B] time ... data ... <losses> lr ... eta ...``).
    """

    def run_epoch(self):
        if dist_utils.is_distributed():
            self.start_distributed_epoch()
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        end = time.time()
        loader = self.train_loader_x
        if progress_stream() is not None:
            loader = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.max_epoch}", leave=False,
                          dynamic_ncols=True, file=progress_stream())
        skipped = 0
        for self.batch_idx, batch in enumerate(loader):
            fault_point("train_batch")
            replaced = replacement_mask(batch)
            if replaced is not None:
                skipped += int(replaced.sum())
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
            only_few_batches = self.num_batches < self.cfg.TRAIN.PRINT_FREQ
            if meet_freq or only_few_batches:
                nb_remain = self.num_batches - self.batch_idx - 1
                nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
                info = [
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ]
                print(" ".join(info))

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()
        skipped = total_skipped(skipped)
        if skipped:
            print(f"DATALOADER.SKIP_BAD_IMAGES: skipped {skipped} unreadable image(s) in epoch {self.epoch + 1}")

    def parse_batch_train(self, batch):
        return (batch["img"].to(self.device), batch["label"].to(self.device),
                batch["domain"].to(self.device))

    def start_distributed_epoch(self):
        """Before an epoch under torchrun: select the epoch's batch order and reseed this
        rank's random streams.

        The order depends only on (seed, epoch) and the random streams (augmentations,
        worker seeds, dropout) only on (seed, epoch, rank), so a run resumed after any
        epoch continues exactly like an uninterrupted one on every rank (the checkpoint
        holds rank 0's RNG state only), and the ranks do not draw identical augmentations.
        """
        seed = dist_utils.shared_seed(self.cfg.SEED)
        for loader in (self.train_loader_x, self.train_loader_u):
            set_epoch = getattr(getattr(loader, "batch_sampler", None), "set_epoch", None)
            if set_epoch is not None:
                set_epoch(self.epoch)
        set_random_seed(dist_utils.derive_seed(seed, self.epoch, dist_utils.rank(), _AUGMENTATION_STREAM))
