"""Shared fixtures: a tiny random CLIP in OpenAI's key format and generated
datasets in their real on-disk layouts, plus a runner for ``train.py``."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The frozen-feature cache (trainers/feature_cache.py) of every run the tests start lives in a
# folder of this session, never in the user's ~/.cache.
os.environ["PROMPTCLIP_CACHE_DIR"] = tempfile.mkdtemp(prefix="pc-test-cache-")
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


_TRAIN_SERVER = {}


def train_server_env():
    """``{"PYTHON": ..., "PROMPTCLIP_TRAIN_SERVER": ...}``: an interpreter stand-in whose
    ``train.py`` runs are forked from a server that has imported torch and our packages once
    (tests/helpers/train_server.py), so a run starts in milliseconds instead of ~3.5 s.

    Give it to anything that runs ``$PYTHON train.py`` (the bash scripts); ``run_train`` uses it
    itself. ``PROMPTCLIP_TEST_NO_SERVER=1`` turns it off (every run then starts a fresh
    interpreter, as a user's would).
    """
    if os.environ.get("PROMPTCLIP_TEST_NO_SERVER"):
        return {"PYTHON": sys.executable}
    if "env" not in _TRAIN_SERVER:
        folder = tempfile.mkdtemp(prefix="pc-train-server-")  # short: socket paths are limited
        socket_path = os.path.join(folder, "socket")
        client = os.path.join(folder, "python")
        with open(client, "w") as handle:  # the client, run by this interpreter
            handle.write(f"#!{sys.executable}\n" + (TESTS / "helpers" / "train_client.py").read_text())
        os.chmod(client, 0o755)
        log = open(os.path.join(folder, "server.log"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.train_server", socket_path],
                                cwd=str(REPO), stdout=subprocess.PIPE, stderr=log, text=True)
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError(f"the train server did not start; see {log.name}")

        def stop():
            proc.kill()
            proc.wait()
            shutil.rmtree(folder, ignore_errors=True)

        atexit.register(stop)
        _TRAIN_SERVER["env"] = {"PYTHON": client, "PROMPTCLIP_TRAIN_SERVER": socket_path}
    return dict(_TRAIN_SERVER["env"])


def run_train(*args, env=None, timeout=600):
    """Run ``python train.py ARGS`` from the repository root; return the CompletedProcess.

    The run goes through the train server (see :func:`train_server_env`): a forked process with
    its own pid, environment, working directory, output and exit status.
    """
    full_env = dict(os.environ)
    full_env.pop("PROMPTCLIP_DEBUG", None)
    full_env.update(train_server_env())
    if env:
        full_env.update(env)
    return subprocess.run(
        [full_env["PYTHON"], str(REPO / "train.py"), *map(str, args)],
        cwd=str(REPO), env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def fast_python():
    """Environment entries that make ``$PYTHON train.py`` (the scripts) use the train server."""
    return train_server_env()


@pytest.fixture
def train_cli():
    """The :func:`run_train` helper as a fixture."""
    return run_train


@pytest.fixture(scope="module")
def clip_model():
    """The tiny ViT CLIP, every weight frozen (one per test module)."""
    from tests.helpers.methods import frozen_tiny_vit_clip

    return frozen_tiny_vit_clip()


@pytest.fixture(scope="session")
def vit_b16_shaped():
    """A CLIP with ViT-B/16's widths and depths, for parameter counts."""
    from tests.helpers.methods import vit_b16_shaped_clip

    return vit_b16_shaped_clip()
