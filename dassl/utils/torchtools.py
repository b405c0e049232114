"""Checkpoint IO and small nn.Module helpers (Dassl's names and file layout).

Files written by ``save_checkpoint`` in ``save_dir``:

* ``model.pth.tar-<epoch>`` (or ``model_name`` when given): the ``state`` dict;
* ``checkpoint``: a one-line text file naming the file saved last (read by resume);
* ``model-best.pth.tar``: a copy of the saved file when ``is_best``.

Every file is written to a temporary file in the same directory, fsync'ed and renamed over the
target, so an interrupted run never leaves a half-written checkpoint under a real name.
"""
import collections
import os.path as osp
import pickle
import shutil
import warnings
from collections import OrderedDict

import torch
import torch.nn as nn

from .faults import fault_point
from .tools import atomic_open, describe_write_error

__all__ = [
    "atomic_torch_save",
    "save_checkpoint",
    "load_checkpoint",
    "load_released_checkpoint",
    "strip_module_prefix",
    "state_dict_of",
    "resume_from_checkpoint",
    "open_all_layers",
    "open_specified_layers",
    "count_num_param",
    "load_pretrained_weights",
    "init_network_weights",
]

LATEST_CHECKPOINT_FILE = "checkpoint"
BEST_CHECKPOINT_NAME = "model-best.pth.tar"


def atomic_torch_save(obj, fpath):
    """``torch.save(obj, fpath)`` through a temporary file and an atomic rename.

    A failure (or a kill) before the rename leaves ``fpath`` as it was; the reliability tests
    inject their checkpoint faults here (``fault_point("checkpoint_write")``).
    """
    with atomic_open(fpath, "wb") as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError as error:
            # torch.save's C++ writer turns a failed write of the file object (ENOSPC, EIO...)
            # into "[enforce fail at inline_container.cc:...] . unexpected pos 64 vs 0", which
            # names neither the file nor the cause: report the OSError the write raised.
            if writer.error is None:
                raise
            raise describe_write_error(writer.error, fpath) from error
        fault_point("checkpoint_write")


class _RecordingWriter:
    """A file object that remembers the first ``OSError`` its ``write`` raised."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data):
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def __getattr__(self, name):
        return getattr(self.handle, name)


def strip_module_prefix(state_dict):
    """Drop the "module." prefix that nn.DataParallel adds to parameter names."""
    return OrderedDict(
        (key[len("module."):] if key.startswith("module.") else key, value)
        for key, value in state_dict.items()
    )


def state_dict_of(checkpoint):
    """The weights in a loaded checkpoint: its ``state_dict`` entry, or the dict itself."""
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        return checkpoint["state_dict"]
    return checkpoint


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""):
    """Save ``state`` (a dict with at least ``state_dict`` and ``epoch``) into ``save_dir``.

    The file is ``model.pth.tar-<epoch>`` unless ``model_name`` is given; the ``checkpoint``
    text file is updated to name it and, if ``is_best``, it is also copied to
    ``model-best.pth.tar``. ``state`` itself is not modified. Returns the saved file's path.
    """
    state = dict(state)
    if remove_module_from_keys and "state_dict" in state:
        state["state_dict"] = strip_module_prefix(state["state_dict"])

    fname = model_name or f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, fname)
    atomic_torch_save(state, fpath)
    print(f"Checkpoint saved to {fpath}")

    with atomic_open(osp.join(save_dir, LATEST_CHECKPOINT_FILE), "w") as handle:
        handle.write(f"{fname}\n")

    if is_best:
        best_fpath = osp.join(save_dir, BEST_CHECKPOINT_NAME)
        with open(fpath, "rb") as source, atomic_open(best_fpath, "wb") as target:
            shutil.copyfileobj(source, target)
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


def load_checkpoint(fpath, weights_only=True):
    """Load a checkpoint onto the CPU.

    By default only tensors and plain containers are unpickled (``torch.load(weights_only=True)``),
    so a checkpoint cannot run code. Checkpoints of the original Dassl also pickle their warm-up
    scheduler's ``successor`` (a torch scheduler holding its optimizer): those objects load as
    inert placeholders (:class:`InertObject`), tensors intact, while any other class a pickle asks
    for is refused. Pass ``weights_only=False`` only for files you trust.

    Raises:
        FileNotFoundError: no file at ``fpath``.
        RuntimeError: the file is corrupt or incomplete, or holds objects that weights-only
            loading refuses; the message names ``fpath``.
    """
    if fpath is None:
        raise ValueError("load_checkpoint: the checkpoint path is None")
    if not osp.isfile(fpath):
        raise FileNotFoundError(f'checkpoint not found: "{fpath}"')
    try:
        return torch.load(fpath, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        # weights-only loading names the refused class as a "global" (or "GLOBAL"); any other
        # unpickling failure means the bytes themselves are damaged.
        if not (weights_only and "global" in str(error).lower()):
            raise RuntimeError(f'corrupt or incomplete checkpoint "{fpath}": {_first_line(error)}') from error
    except Exception as error:  # noqa: BLE001 - damaged bytes can surface as almost any error type
        raise RuntimeError(f'corrupt or incomplete checkpoint "{fpath}": {_first_line(error)}') from error
    # The original Dassl pickles its warm-up scheduler's ``successor`` (a torch scheduler holding
    # its optimizer): read such a file with inert stand-ins for torch's optimizer and scheduler
    # classes, tensors intact; any other class stays refused, and nothing is executed.
    try:
        return torch.load(fpath, map_location="cpu", weights_only=False,
                          pickle_module=_inert_pickle_module(inert_only=_TORCH_OPTIM_MODULES))
    except RefusedGlobal as refused:
        raise RuntimeError(
            f'checkpoint "{fpath}" holds Python objects that safe loading refuses ({refused.name}); '
            "loading them could run code. If you trust this file, load it with "
            "torch.load(path, weights_only=False)") from None
    except Exception as error:  # noqa: BLE001
        raise RuntimeError(f'corrupt or incomplete checkpoint "{fpath}": {_first_line(error)}') from error


# Classes an original-Dassl checkpoint pickles besides tensors: torch's optimizers and schedulers.
_TORCH_OPTIM_MODULES = ("torch.optim.",)
# Plain containers those objects' state holds (safe to build for real).
_PLAIN_CONTAINERS = {"collections.defaultdict": collections.defaultdict, "builtins.dict": dict,
                     "__builtin__.dict": dict, "builtins.list": list, "__builtin__.list": list}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a class or function that the restricted unpickler does not allow."""

    def __init__(self, name):
        super().__init__(f"refused global {name}")
        self.name = name


class InertObject:
    """Placeholder for a pickled object whose class :func:`load_released_checkpoint`
    refuses to import. It records the pickled arguments/state and runs no code of
    the original class."""

    def __init__(self, *args, **kwargs):
        self.pickled_args = args

    def __setstate__(self, state):
        self.pickled_state = state

    def __repr__(self):
        return f"<inert {type(self).__name__}>"


_INERT_CLASSES = {}


def _inert_class(qualname):
    if qualname not in _INERT_CLASSES:
        _INERT_CLASSES[qualname] = type(qualname, (InertObject,), {"__module__": __name__})
    return _INERT_CLASSES[qualname]


def _safe_globals():
    """The globals ``torch.load(weights_only=True)`` allows (tensor rebuilders, dtypes, ...)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        return dict(_get_allowed_globals())
    except (ImportError, AttributeError):  # a torch without that helper: the essentials
        import collections
        import torch._utils as tu
        return {
            "collections.OrderedDict": collections.OrderedDict,
            "torch._utils._rebuild_tensor_v2": tu._rebuild_tensor_v2,
            "torch._utils._rebuild_parameter": tu._rebuild_parameter,
            "torch.Size": torch.Size,
        }


class _InertUnpickler(pickle.Unpickler):
    """Resolves torch's weights-only globals (and plain containers); every other class becomes an
    inert placeholder, or, when ``inert_only`` names module prefixes, only classes from those
    modules do and anything else raises :class:`RefusedGlobal`."""

    inert_only = None

    def find_class(self, module, name):
        key = f"{module}.{name}"
        allowed = _safe_globals()
        if key in allowed:
            return allowed[key]
        if key in _PLAIN_CONTAINERS:
            return _PLAIN_CONTAINERS[key]
        if self.inert_only is not None and not key.startswith(self.inert_only):
            raise RefusedGlobal(key)
        return _inert_class(key)


def _inert_pickle_module(inert_only=None):
    import types

    unpickler = type("_Unpickler", (_InertUnpickler,), {"inert_only": inert_only})
    module = types.ModuleType("dassl_inert_pickle")
    module.Unpickler = unpickler
    module.load = lambda f, **kw: unpickler(f, **kw).load()
    module.__dict__.update({k: getattr(pickle, k) for k in ("UnpicklingError", "HIGHEST_PROTOCOL")})
    return module


def load_released_checkpoint(fpath):
    """Load a checkpoint that may come from elsewhere (e.g. weights released with
    the original CoOp/MaPLe code) without running any code from it.

    Tries :func:`load_checkpoint` first. Checkpoints saved by the original Dassl
    pickle their LR scheduler object, which safe loading refuses; for those, the
    tensors and plain data load normally and every other object is replaced by an
    inert placeholder (enough for evaluation: the weights are plain tensors).
    """
    try:
        return load_checkpoint(fpath)
    except RuntimeError as error:
        if "safe loading refuses" not in str(error):
            raise
        print(f"Note: {_first_line(error).split(';')[0]}; loading it with inert placeholders instead")
    try:
        ckpt = torch.load(fpath, map_location="cpu", weights_only=False, pickle_module=_inert_pickle_module())
    except Exception as error:  # noqa: BLE001 - any failure here means unreadable bytes
        raise RuntimeError(f'corrupt or incomplete checkpoint "{fpath}": {_first_line(error)}') from error
    return ckpt


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """Restore the checkpoint named in ``<fdir>/checkpoint`` into model, optimizer and scheduler.

    Returns the ``epoch`` stored in the checkpoint. Dassl's trainers store the number of
    finished epochs there, which is also the 0-based index of the epoch to run next.
    """
    pointer = osp.join(fdir, LATEST_CHECKPOINT_FILE)
    if not osp.isfile(pointer):
        raise FileNotFoundError(f'no "checkpoint" file naming the latest model in "{fdir}"')
    with open(pointer, "r") as handle:
        model_name = handle.readline().strip()
    fpath = osp.join(fdir, model_name)

    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and "scheduler" in checkpoint:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def open_all_layers(model):
    """Put ``model`` in train mode and make every parameter trainable."""
    model.train()
    for param in model.parameters():
        param.requires_grad = True


def open_specified_layers(model, open_layers):
    """Train only the child modules named in ``open_layers`` (str or list); freeze the rest."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    missing = [name for name in open_layers if not hasattr(model, name)]
    if missing:
        raise ValueError(f"{type(model).__name__} has no layers named {missing}")
    for name, module in model.named_children():
        is_open = name in open_layers
        module.train(is_open)
        for param in module.parameters():
            param.requires_grad = is_open


def count_num_param(model=None, params=None):
    """Number of scalar parameters in ``model``, or in ``params`` (tensors or param-group dicts)."""
    if model is not None:
        return sum(param.numel() for param in model.parameters())
    if params is not None:
        total = 0
        for item in params:
            if isinstance(item, dict):
                group = item["params"]
                group = [group] if isinstance(group, torch.Tensor) else group
                total += sum(param.numel() for param in group)
            else:
                total += item.numel()
        return total
    raise ValueError("count_num_param needs a model or params")


def load_pretrained_weights(model, weight_path):
    """Load the weights in ``weight_path`` whose names and shapes match ``model``; skip the rest.

    Accepts a bare state dict or a checkpoint with a ``state_dict`` entry; "module." prefixes
    are ignored. Warns when nothing matches and prints the names of skipped weights.
    """
    state_dict = state_dict_of(load_checkpoint(weight_path))
    model_state = model.state_dict()
    matched, discarded = OrderedDict(), []
    for key, value in strip_module_prefix(state_dict).items():
        if key in model_state and model_state[key].size() == value.size():
            matched[key] = value
        else:
            discarded.append(key)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)")
        return
    model_state.update(matched)
    model.load_state_dict(model_state)
    print(f"Successfully loaded pretrained weights from {weight_path}")
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")


_INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_network_weights(model, init_type="normal", gain=0.02):
    """Initialise Conv/Linear weights by ``init_type`` (biases to 0) and norm layers to (1, 0)."""
    if init_type not in _INIT_TYPES:
        raise ValueError(f"init_type must be one of {list(_INIT_TYPES)}, got {init_type!r}")

    def init_module(module):
        classname = module.__class__.__name__
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        if weight is not None and ("Conv" in classname or "Linear" in classname):
            if init_type == "normal":
                nn.init.normal_(weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(weight, gain=gain)
            if bias is not None:
                nn.init.constant_(bias, 0.0)
        elif ("BatchNorm" in classname or "InstanceNorm" in classname) and weight is not None:
            nn.init.constant_(weight, 1.0)
            if bias is not None:
                nn.init.constant_(bias, 0.0)

    with torch.no_grad():
        model.apply(init_module)
