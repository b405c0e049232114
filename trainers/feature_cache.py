"""An exact, cross-run cache of the frozen CLIP's image features of an evaluation split.

Methods whose test-time image features are the frozen CLIP's own (zero-shot CLIP, CoOp, the
linear probe, a regularizer over such a base) encode the same test images in every run: an
ablation or few-shot sweep evaluates one test set dozens of times. The features are cached on
disk under a key that covers everything that determines them:

* the image encoder's weights (a SHA-256 over its tensors as they are in memory, so a cast or a
  different checkpoint misses),
* the dataset, the split and its image list (path, label, file size and modification time of
  every image),
* the test transform (its full description) and the input settings,
* the precision and the device type, and the torch version.

Any change gives another key; files are written through a temporary file and renamed, so runs
that fill the same entry at the same time are safe (one rename wins, both are complete). The
cache is on by default (``TEST.FEATURE_CACHE``); ``TEST.FEATURE_CACHE_DIR`` (default
``$PROMPTCLIP_CACHE_DIR/features`` or ``~/.cache/promptclip/features``) is where it lives.
"""
import hashlib
import json
import os

import torch

from dassl.utils import atomic_torch_save, load_checkpoint

VERSION = 1


def default_cache_dir():
    """``$PROMPTCLIP_CACHE_DIR/features`` or ``~/.cache/promptclip/features``."""
    root = os.environ.get("PROMPTCLIP_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "promptclip")
    return os.path.join(root, "features")


def weights_digest(module):
    """SHA-256 of ``module``'s parameters and buffers (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def image_list_digest(items):
    """SHA-256 over (path, label, size, mtime) of every item (a missing file still hashes)."""
    digest = hashlib.sha256()
    for item in items:
        try:
            stat = os.stat(item.impath)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size = mtime = -1
        digest.update(f"{item.impath}\t{item.label}\t{size}\t{mtime}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def cache_key(parts):
    """The file name stem for the key ``parts`` (a JSON-able dict)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


class FeatureCache:
    """Image features by key in ``directory`` (``<key>.pt`` = {"features", "labels", "parts"})."""

    def __init__(self, directory):
        self.directory = directory

    def path(self, key):
        return os.path.join(self.directory, f"{key}.pt")

    def load(self, key, labels):
        """The cached (N, E) features for ``key``, or None (absent, unreadable, or labels that
        disagree: never trusted then)."""
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            entry = load_checkpoint(path)
        except (OSError, RuntimeError) as error:
            print(f"Feature cache: ignoring unreadable {path} ({error})")
            return None
        if entry.get("version") != VERSION or not torch.equal(entry["labels"], labels):
            return None
        return entry["features"]

    def save(self, key, features, labels, parts):
        os.makedirs(self.directory, exist_ok=True)
        atomic_torch_save({"version": VERSION, "features": features.cpu(), "labels": labels.cpu(), "parts": parts},
                          self.path(key))
        return self.path(key)
