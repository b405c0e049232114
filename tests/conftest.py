"""Shared fixtures: a tiny random CLIP in OpenAI's key format and generated
datasets in their real on-disk layouts, plus a runner for ``train.py``."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
for p in (str(REPO), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    """Path to a saved tiny ViT CLIP (random weights, OpenAI key names)."""
    from tests.helpers.tiny_clip import save_tiny_clip

    return str(save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_vit.pt", kind="vit", seed=0))


@pytest.fixture(scope="session")
def eurosat_root(tmp_path_factory):
    """A DATA root holding a generated EuroSAT layout with its split file."""
    from tests.helpers.fake_datasets import make_eurosat

    root = tmp_path_factory.mktemp("data")
    make_eurosat(str(root), with_split=True)
    return str(root)


def run_train(*args, env=None, timeout=600):
    """Run ``python train.py ARGS`` from the repository root; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.pop("PROMPTCLIP_DEBUG", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *map(str, args)],
        cwd=str(REPO), env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def train_cli():
    """The :func:`run_train` helper as a fixture."""
    return run_train


@pytest.fixture(scope="module")
def clip_model():
    """The tiny ViT CLIP, every weight frozen (one per test module)."""
    from tests.helpers.methods import frozen_tiny_vit_clip

    return frozen_tiny_vit_clip()


@pytest.fixture(scope="module")
def vit_b16_shaped():
    """A CLIP with ViT-B/16's widths and depths, for parameter counts."""
    from tests.helpers.methods import vit_b16_shaped_clip

    return vit_b16_shaped_clip()
