"""Small file, randomness and string helpers shared by the whole code base (Dassl's names)."""
import contextlib
import difflib
import importlib.metadata
import json
import os
import os.path as osp
import platform
import random
import re
import sys
import tempfile
import warnings

import numpy as np
import PIL
import torch
from PIL import Image

__all__ = [
    "mkdir_if_missing",
    "check_isfile",
    "atomic_open",
    "describe_write_error",
    "remove_stale_temp_files",
    "read_json",
    "write_json",
    "set_deterministic",
    "set_random_seed",
    "UnreadableImageError",
    "read_image",
    "collect_env_info",
    "listdir_nohidden",
    "get_most_similar_str_to_a_from_b",
    "check_availability",
    "tolist_if_not",
]


def mkdir_if_missing(dirname):
    """Create ``dirname`` (and its parents) unless it exists; "" means the current directory."""
    if dirname:
        os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath):
    """Return whether ``fpath`` is a file, warning when it is not."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


@contextlib.contextmanager
def atomic_open(fpath, mode="w"):
    """Open a temporary file next to ``fpath``; on a clean exit it replaces ``fpath`` in one step.

    Readers (and a run that is killed half-way) therefore see either the old file or the complete
    new one, never a partial write. The data is fsync'ed before the rename. On an exception the
    temporary file is removed and ``fpath`` is left untouched; an ``OSError`` that names no file
    (e.g. ENOSPC from a write) gets ``fpath`` as its ``filename``, so its message names it.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    directory = osp.dirname(osp.abspath(fpath))
    mkdir_if_missing(directory)
    fd, tmp_path = tempfile.mkstemp(prefix=f".{osp.basename(fpath)}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open() would, so
        # that colleagues on a shared cluster can read results and checkpoints as usual.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, fpath)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        if isinstance(error, OSError) and error.errno is not None and error.filename is None \
                and not getattr(error, "written_path", None):
            # A failed write or fsync (e.g. ENOSPC) does not say which file; the user needs to
            # know. (Only for errno-style errors: str() of a message-only OSError with a
            # filename would read "[Errno None] None: ...".)
            raise describe_write_error(error, fpath) from error
        raise


def describe_write_error(error, fpath):
    """An ``OSError`` like ``error`` (same errno and class) whose message names ``fpath``:
    ``No space left on device while writing <fpath>``."""
    if error.errno is None or getattr(error, "written_path", None):
        return error
    described = type(error)(error.errno, f"{error.strerror or os.strerror(error.errno)} while writing {fpath}")
    described.written_path = fpath
    return described


def current_umask():
    """The process umask (read by setting and restoring it: there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Names atomic_open gives its temporary files: ".<target>.<8 random chars>.tmp" (tempfile.mkstemp).
_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temp_files(directory):
    """Delete the temporary files that an interrupted ``atomic_open`` left in ``directory``.

    A process killed between creating its temporary file and renaming it (SIGKILL, power loss)
    cannot clean up. Such a file never has a real name, so nothing ever loads it; this only
    reclaims the space. Only the directory itself is scanned (not sub-directories). Call it
    only for a directory no other process is writing to. Returns the removed paths.
    """
    if not osp.isdir(directory):
        return []
    removed = []
    for name in sorted(os.listdir(directory)):
        path = osp.join(directory, name)
        if _TEMP_FILE.match(name) and osp.isfile(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


def read_json(fpath):
    """Load a JSON file; malformed content raises ``ValueError`` naming the file."""
    with open(fpath, "r") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f'invalid JSON in "{fpath}": {error}') from None


def write_json(obj, fpath):
    """Write ``obj`` as indented JSON to ``fpath`` atomically (see ``atomic_open``)."""
    with atomic_open(fpath, "w") as handle:
        json.dump(obj, handle, indent=4, separators=(",", ": "))


def set_deterministic(enabled):
    """Select deterministic GPU kernels (``enabled``) or cuDNN autotuning (not ``enabled``).

    Deterministic mode sets ``CUBLAS_WORKSPACE_CONFIG`` (unless the user set it) before any cuBLAS
    call, turns cuDNN's benchmark mode off and its deterministic mode on, and makes PyTorch raise on
    an operation that has no deterministic implementation rather than silently vary.
    """
    enabled = bool(enabled)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled
    # torch.use_deterministic_algorithms imports torch._dynamo (about 2 s of start-up for every
    # run), so it is only called when the setting actually changes.
    if torch.are_deterministic_algorithms_enabled() != enabled:
        torch.use_deterministic_algorithms(enabled)


def set_random_seed(seed):
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


class UnreadableImageError(OSError):
    """An image file exists but cannot be decoded (corrupt, truncated or not an image)."""


def read_image(path):
    """Load the image at ``path`` as an RGB ``PIL.Image``.

    A missing file raises ``FileNotFoundError`` and an undecodable one ``UnreadableImageError``;
    both are ``OSError``s whose message names ``path``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'image not found: "{path}"')
    try:
        with Image.open(path) as image:
            # convert() forces the full decode, so truncated files fail here and not later.
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f'cannot read image "{path}": {error}') from error


def collect_env_info():
    """A short multi-line description of the software and hardware (cheap: no subprocesses).

    torchvision's version is read from its package metadata: importing it would cost ~1.6 s.
    """
    try:
        torchvision_version = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        torchvision_version = "not installed"
    lines = [
        f"Python: {sys.version.split()[0]}",
        f"Platform: {platform.platform()}",
        f"PyTorch: {torch.__version__}",
        f"Torchvision: {torchvision_version}",
        f"NumPy: {np.__version__}",
        f"Pillow: {PIL.__version__}",
        f"CPU threads (torch): {torch.get_num_threads()}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA (torch build): {torch.version.cuda}")
        for index in range(torch.cuda.device_count()):
            lines.append(f"GPU {index}: {torch.cuda.get_device_name(index)}")
    return "\n".join(lines)


def listdir_nohidden(path, sort=False):
    """Names in directory ``path`` that do not start with "." (sorted if ``sort``)."""
    items = [name for name in os.listdir(path) if not name.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a, b):
    """The string in ``b`` most similar to ``a`` (difflib ratio; the last one wins ties, as in Dassl)."""
    best, best_score = None, -1.0
    for candidate in b:
        score = difflib.SequenceMatcher(None, a, candidate).ratio()
        if score >= best_score:
            best, best_score = candidate, score
    return best


def check_availability(requested, available):
    """Raise ``ValueError`` (with the closest valid name) unless ``requested`` is in ``available``."""
    if requested not in available:
        suggestion = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(
            f"The requested one is expected to belong to {list(available)}, "
            f"but got [{requested}] (do you mean [{suggestion}]?)"
        )


def tolist_if_not(x):
    """``x`` itself if it is a list, else ``[x]``."""
    return x if isinstance(x, list) else [x]
