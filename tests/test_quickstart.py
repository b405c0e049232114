"""README's main job, shortened: scripts/quickstart.sh on MiniShapes with the bundled mini CLIP.

A learning test, not a smoke run: after a few epochs on 16 shots of the 32 base classes, CoOp and
BMIP must beat zero-shot CLIP's base-class accuracy by at least 5 points.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import train_server_env

from conftest import REPO

pytestmark = pytest.mark.slow

EPOCHS = 4
RUN = "minishapes/shots_16/{trainer}/mini_clip/seed1/results.json"


def _accuracy(out, step, trainer):
    path = out / "base2new" / step / RUN.format(trainer=trainer)
    return json.loads(path.read_text())["metrics"]["accuracy"]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "quickstart"
    env = dict(os.environ, **train_server_env(), OUTPUT=str(out), METHODS="zsclip coop bmip",
               EPOCHS=str(EPOCHS))
    proc = subprocess.run(["bash", str(REPO / "scripts/quickstart.sh")], cwd=str(out.parent), env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, env, proc


def test_prompt_learning_beats_zero_shot_on_the_base_classes(quickstart):
    out, _, _ = quickstart
    zero_shot = _accuracy(out, "train_base", "ZeroshotCLIP")
    for trainer in ("CoOp", "BMIP"):
        trained = _accuracy(out, "train_base", trainer)
        assert trained >= zero_shot + 5, f"{trainer}: base {trained:.1f} vs zero-shot {zero_shot:.1f}"
    # zero-shot is itself far above chance (3.1% among 32 classes): the mini CLIP is pretrained
    assert zero_shot > 15


def test_the_table_lists_the_methods_with_their_results_files(quickstart):
    out, _, proc = quickstart
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    columns = [c.strip() for c in table[0].strip("|").split("|")]
    assert columns == ["Method", "MiniShapes Base", "MiniShapes New", "MiniShapes HM"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[1:]]
    assert [row[0] for row in rows] == ["ZeroshotCLIP/mini_clip", "CoOp/mini_clip", "BMIP/mini_clip"]
    for row in rows:
        trainer = row[0].split("/")[0]
        base = _accuracy(out, "train_base", trainer)
        new = _accuracy(out, "test_new", trainer)
        hm = 2 * base * new / (base + new) if base + new else 0.0
        assert [float(cell) for cell in row[1:]] == pytest.approx([base, new, hm], abs=0.005)
    # the runs used the mini CLIP and the shortened schedule
    log = (out / "base2new/train_base" / RUN.format(trainer="CoOp")).with_name("log.txt").read_text()
    assert "Loading CLIP (backbone: mini-clip)" in log and f"epoch [{EPOCHS}/{EPOCHS}]" in log


def test_a_second_quickstart_reruns_nothing(quickstart):
    out, env, _ = quickstart
    before = {p: p.stat().st_mtime_ns for p in Path(out / "base2new").rglob("results.json")}
    again = subprocess.run(["bash", str(REPO / "scripts/quickstart.sh")], cwd=str(out.parent), env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in Path(out / "base2new").rglob("results.json")}
    assert before == after and len(before) == 7  # zsclip: 3 evaluations; CoOp, BMIP: train + test each


@pytest.mark.parametrize("epochs", ["1", "two"])
def test_too_few_or_bad_epochs_are_refused_before_anything_runs(tmp_path, epochs):
    env = dict(os.environ, **train_server_env(), OUTPUT=str(tmp_path / "qs"), EPOCHS=epochs)
    proc = subprocess.run(["bash", str(REPO / "scripts/quickstart.sh")], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"ERROR: EPOCHS must be an integer >= 2 (the first epoch is a warm-up "
                                   f"at lr 1e-5), got '{epochs}'")
    assert not (tmp_path / "qs").exists()
