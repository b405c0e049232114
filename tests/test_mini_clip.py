"""The bundled mini CLIP: loaded by name, its reported zero-shot numbers, and the pretraining recipe."""
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import clip
from conftest import REPO
from datasets import minishapes as world

sys.path.insert(0, str(REPO / "tools"))
import pretrain_mini_clip as pretrain  # noqa: E402

CHECKPOINT = REPO / "clip" / "weights" / "mini-clip.pt"
REPORT = REPO / "clip" / "weights" / "mini-clip.pt.json"


@pytest.fixture(scope="module")
def mini_clip():
    model, preprocess = clip.load("mini-clip")
    return model


def test_mini_clip_is_bundled_and_loads_by_name(mini_clip):
    assert "mini-clip" in clip.available_models()
    state = torch.load(CHECKPOINT, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert CHECKPOINT.stat().st_size < 20 * 2 ** 20
    assert state["token_embedding.weight"].shape == (49408, 128)
    assert state["visual.conv1.weight"].shape == (128, 3, 4, 4)
    assert mini_clip.image_resolution == 32 and mini_clip.context_length == 77
    assert len(mini_clip.visual.transformer.resblocks) == 4 and len(mini_clip.transformer.resblocks) == 4
    assert mini_clip.embed_dim == 128 and mini_clip.text_width == 128
    assert next(mini_clip.parameters()).dtype == torch.float32  # loaded in fp32 like every CLIP


def test_missing_bundled_checkpoint_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(clip.loader.BUNDLED_MODELS, "mini-clip", str(tmp_path / "gone.pt"))
    with pytest.raises(RuntimeError, match="bundled model 'mini-clip' is missing from .*gone.pt"):
        clip.load("mini-clip")


@pytest.mark.slow
def test_reported_zero_shot_accuracy_is_what_the_checkpoint_gives(mini_clip):
    """The numbers in the report (and docs/MINI_CLIP.md) are recomputed from the shipped weights."""
    report = json.loads(REPORT.read_text())
    benchmark_test = world.render_benchmark()["test"]
    web_held_out = pretrain.web_held_out_set(report["recipe"]["seed"] + 1)
    assert len(web_held_out[0]) == 16 * 30
    results = pretrain.evaluate(mini_clip, benchmark_test, web_held_out)
    for key, value in report["zero_shot"].items():
        assert results[key] == pytest.approx(value, abs=0.05), key
    chance_among_32, chance_among_64 = 100 / 32, 100 / 64
    assert results["base"] > 5 * chance_among_32 and results["new"] > 5 * chance_among_32
    assert results["held_out_among_all"] > 4 * chance_among_64


# ----------------------------------------------------------------------------------------------
# The recipe's pieces
# ----------------------------------------------------------------------------------------------
def test_shared_positive_loss_is_infonce_for_distinct_pairs():
    torch.manual_seed(0)
    images, texts = torch.randn(6, 8), torch.randn(6, 8)
    ours = pretrain.shared_positive_loss(images, texts, 10.0, torch.eye(6, dtype=torch.bool))
    logits = 10.0 * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).t()
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    assert ours.item() == pytest.approx(expected.item(), rel=1e-6)


def test_shared_positive_loss_does_not_push_apart_copies_of_a_class():
    """Two images of one class with two captions of that class. Plain InfoNCE (identity targets)
    rewards pulling the copies apart; the shared-positive loss penalises it."""
    together = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    apart = torch.eye(2)
    shared, plain = torch.ones(2, 2, dtype=torch.bool), torch.eye(2, dtype=torch.bool)

    def loss(features, positives):
        return pretrain.shared_positive_loss(features, features, 50.0, positives).item()

    assert loss(together, shared) == pytest.approx(math.log(2), rel=1e-4)  # its minimum
    assert loss(apart, shared) > loss(together, shared) + 10
    assert loss(apart, plain) < 1e-6 < loss(together, plain)  # what plain InfoNCE would prefer


def test_captions_cover_seen_compositions_and_single_attributes_but_never_held_out_ones():
    texts, colours, shapes = pretrain.caption_table()
    n = len(pretrain.TEMPLATES)
    assert len(texts) == (48 + 8 + 8) * n
    for c, s in [p for p in world.compositions() if world.is_held_out(*p)]:
        assert not any(world.classname(c, s) in t for t in texts)
    assert "a photo of a red shape." in texts and "a photo of a circle." in texts
    # caption ids -> attributes agree with the text
    row = texts.index("a photo of a purple star.")
    assert (colours[row].item(), shapes[row].item()) == (5, 3)
    assert colours[texts.index("a photo of a circle.")].item() == pretrain.ANY


def test_trimmed_text_encoding_equals_the_full_77_tokens(mini_clip):
    tokens = clip.tokenize(["a photo of a red circle.", "a heart."])
    full = mini_clip.encode_text(tokens)
    trimmed = pretrain.encode_texts(mini_clip, tokens)
    assert torch.allclose(full, trimmed, atol=1e-5)


def run_pretraining(tmp_path, *args):
    """Run tools/pretrain_mini_clip.py into ``tmp_path/mini.pt``; return its JSON report."""
    out = tmp_path / "mini.pt"
    proc = subprocess.run([sys.executable, str(REPO / "tools/pretrain_mini_clip.py"), "--out", str(out), *args],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / "mini.pt.json").read_text())


@pytest.mark.slow
def test_a_short_pretraining_run_writes_a_loadable_checkpoint_and_a_report(tmp_path):
    # fp32: bf16 autocast is ~5x slower on CPUs without native bf16 (this test's 30 steps: 150 s
    # instead of 30 s); the bf16 path has its own short run below.
    out = tmp_path / "mini.pt"
    report = run_pretraining(tmp_path, "--steps", "30", "--batch-size", "64", "--pool-per-class", "10", "--warmup", "5",
                      "--lr", "2e-3", "--eval-every", "30", "--precision", "fp32")
    assert report["recipe"]["steps"] == 30 and report["history"][-1]["step"] == 30
    assert report["recipe"]["precision"] == "fp32"
    assert set(report["zero_shot"]) == {"base", "new", "all", "held_out_among_all",
                                        "web_held_out_among_all", "hm"}
    # it learned: the loss fell (4.25 -> 4.02 here; a batch-to-batch wobble at init is ~0.05)
    assert report["history"][-1]["loss"] < report["initial_loss"] - 0.15
    model, _ = clip.load(str(out))
    assert model.visual.conv1.weight.shape == (128, 3, 4, 4)
    assert torch.load(out, weights_only=True)["positional_embedding"].dtype == torch.float16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.pt", "mini.pt.json"]  # no temporary left


@pytest.mark.slow
def test_the_shipped_recipes_bf16_training_runs_and_saves(tmp_path):
    """The shipped recipe trains under bf16 autocast: two small steps through the same code."""
    report = run_pretraining(tmp_path, "--steps", "2", "--batch-size", "16", "--pool-per-class", "2", "--warmup", "1",
                      "--eval-every", "2")
    assert report["recipe"]["precision"] == "bf16" and report["history"][-1]["step"] == 2
    assert math.isfinite(report["history"][-1]["loss"])
    model, _ = clip.load(str(tmp_path / "mini.pt"))
    assert model.visual.conv1.weight.shape == (128, 3, 4, 4)


def test_pretraining_refuses_zero_steps(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools/pretrain_mini_clip.py"), "--out",
                           str(tmp_path / "x.pt"), "--steps", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("error: --steps must be at least 1, got 0")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# The mini_clip configs (CFG=mini_clip): every method builds on the mini CLIP and learns
# ----------------------------------------------------------------------------------------------
MINI_CLIP_CONFIGS = {name: name for name in (
    "CoOp", "CoCoOp", "VPT", "IVLP", "MaPLe", "BMIP", "Bloom", "PromptSRC", "PromptSRC_MaPLe", "PromptSRC_BMIP",
    "PromptSRC_Bloom", "CoPrompt", "CoPrompt_BMIP", "CoPrompt_Bloom")}


def test_every_method_folder_has_a_mini_clip_config():
    found = sorted(p.parent.name for p in (REPO / "configs/trainers").glob("*/mini_clip.yaml"))
    assert found == sorted([*MINI_CLIP_CONFIGS, "LinearProbeCLIP"])  # the probe has no prompt learner


@pytest.mark.parametrize("trainer_name", sorted(MINI_CLIP_CONFIGS))
def test_mini_clip_config_builds_a_model_whose_prompts_get_gradients(trainer_name):
    import trainers
    from dassl.config import get_cfg_default
    from dassl.engine import TRAINER_REGISTRY

    cfg = get_cfg_default()
    trainers.add_trainer_configs(cfg)
    cfg.merge_from_file(str(REPO / "configs/trainers" / MINI_CLIP_CONFIGS[trainer_name] / "mini_clip.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "mini-clip" and tuple(cfg.INPUT.SIZE) == (32, 32)
    assert "random_resized_crop" not in cfg.INPUT.TRANSFORMS  # would crop the 32 px shapes away
    mini_clip, _ = clip.load("mini-clip")  # a fresh copy: building a method may attach things to it
    cls = TRAINER_REGISTRY.get(trainer_name)
    trainer = cls.__new__(cls)  # only the model-building methods are used
    trainer.cfg = cfg
    classnames = [world.classname(*p) for p in world.compositions()[:5]]
    learner = trainer.build_prompt_learner(cfg, classnames, mini_clip)
    model = trainer.build_prompted_clip(mini_clip, learner)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = model(images)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in learner.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
