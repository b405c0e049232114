"""The exact cross-run cache of frozen image features (trainers/feature_cache.py).

A second evaluation of the same split with the same weights, images, transform, precision and
device reads the features instead of the images and gives the very same logits; any of those
changing misses; methods whose images meet prompts never use it; a flag turns it off; a damaged
entry is ignored and rewritten; concurrent writers leave one complete entry.
"""
import json
import os
import threading
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_train
from tests.helpers.methods import CLASSNAMES, images, make_cfg
from trainers.base import PromptedCLIP
from trainers.feature_cache import FeatureCache, cache_key, weights_digest
from trainers.zsclip import FixedPrompts

EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")
SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")


def test_logits_from_cached_features_are_the_forwards_bit_for_bit(clip_model):
    model = PromptedCLIP(clip_model, FixedPrompts([f"a photo of a {c}." for c in CLASSNAMES], clip_model))
    x = images(7, seed=2)
    with torch.no_grad(), model.cached_text_features():
        model.recorded_image_features = []
        direct = model(x)
        feats = model.recorded_image_features[0]
        model.recorded_image_features = None
        again = model.logits_from_image_features(feats)
    assert torch.equal(direct, again)


def test_weights_digest_sees_every_value_and_dtype(clip_model):
    visual = clip_model.visual
    digest = weights_digest(visual)
    assert digest == weights_digest(visual)
    with torch.no_grad():
        visual.ln_post.bias[0] += 1e-6
        assert weights_digest(visual) != digest
        visual.ln_post.bias[0] -= 1e-6
    assert weights_digest(visual) == digest
    assert weights_digest(visual.half()) != digest
    visual.float()


def test_damaged_entry_and_other_labels_are_never_trusted(tmp_path, capsys):
    cache = FeatureCache(str(tmp_path))
    labels = torch.tensor([0, 1, 1])
    key = cache_key({"a": 1})
    cache.save(key, torch.ones(3, 4), labels, {"a": 1})
    assert torch.equal(cache.load(key, labels), torch.ones(3, 4))
    assert cache.load(key, torch.tensor([0, 1, 2])) is None
    Path(cache.path(key)).write_bytes(b"not a checkpoint")
    assert cache.load(key, labels) is None
    assert "Feature cache: ignoring unreadable" in capsys.readouterr().out


def test_concurrent_writers_leave_one_complete_entry(tmp_path):
    cache = FeatureCache(str(tmp_path))
    labels = torch.arange(50)
    key = cache_key({"b": 2})
    errors = []

    def write(value):
        try:
            for _ in range(5):
                cache.save(key, torch.full((50, 64), float(value)), labels, {"b": 2})
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write, args=(v,)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    loaded = cache.load(key, labels)
    assert loaded.shape == (50, 64) and loaded.unique().numel() == 1
    assert os.listdir(tmp_path) == [f"{key}.pt"]  # no temporary left behind


# ------------------------------------------------------------------------------ through train.py
def args(root, clip_path, out, cache_dir, *opts, trainer="CoOp", flags=()):
    return [*flags, "--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", EUROSAT_CFG,
            "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", clip_path, "DATASET.NUM_SHOTS", 2,
            "OPTIM.MAX_EPOCH", 1, f"TRAINER.{'MAPLE' if trainer == 'MaPLe' else 'COOP'}.PREC", "fp32",
            "TEST.FEATURE_CACHE_DIR", cache_dir, *opts]


def metrics(out):
    return json.loads(Path(out, "results.json").read_text())["metrics"]


@pytest.mark.slow
def test_a_second_evaluation_reads_the_cache_and_any_change_misses(tmp_path, eurosat_root, tiny_clip_path):
    cache_dir = str(tmp_path / "cache")
    trained = tmp_path / "trained"
    first = run_train(*args(eurosat_root, tiny_clip_path, trained, cache_dir))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Feature cache: image features of the test set written to" in first.stdout
    assert len(os.listdir(cache_dir)) == 1

    def evaluate(name, *opts, clip_path=tiny_clip_path):
        proc = run_train(*args(eurosat_root, clip_path, tmp_path / name, cache_dir, *opts,
                               flags=("--eval-only", "--model-dir", trained, "--load-epoch", 1)))
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    assert "read from" in evaluate("again")
    assert metrics(tmp_path / "again") == metrics(trained)
    # each of these changes what the images become: a new entry, never a stale one
    assert "written to" in evaluate("interpolation", "INPUT.INTERPOLATION", "bilinear")
    assert "written to" in evaluate("precision", "TRAINER.COOP.PREC", "bf16")
    from tests.helpers.tiny_clip import save_tiny_clip

    other = save_tiny_clip(str(tmp_path / "other.pt"), seed=1)
    assert "written to" in evaluate("weights", clip_path=other)
    assert len(os.listdir(cache_dir)) == 4
    # the flag turns it off
    out = evaluate("off", "TEST.FEATURE_CACHE", False)
    assert "Feature cache" not in out and len(os.listdir(cache_dir)) == 4


@pytest.mark.slow
def test_changed_images_miss_and_prompted_images_never_use_the_cache(tmp_path, eurosat_root, tiny_clip_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(eurosat_root, data)
    cache_dir = str(tmp_path / "cache")
    assert "written to" in run_train(*args(str(data), tiny_clip_path, tmp_path / "a", cache_dir)).stdout
    first_test = json.loads((data / "eurosat" / "split_zhou_EuroSAT.json").read_text())["test"][0][0]
    os.utime(data / "eurosat" / "2750" / first_test, ns=(1, 1))  # same bytes, other mtime: counted as changed
    assert "written to" in run_train(*args(str(data), tiny_clip_path, tmp_path / "b", cache_dir)).stdout
    proc = run_train(*args(str(data), tiny_clip_path, tmp_path / "m", cache_dir, "TRAINER.MAPLE.PROMPT_DEPTH", 2,
                           trainer="MaPLe"))
    assert proc.returncode == 0 and "Feature cache" not in proc.stdout
    assert len(os.listdir(cache_dir)) == 2
