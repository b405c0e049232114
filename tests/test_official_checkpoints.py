"""Official checkpoints at every prompt depth load strictly into ours (issue 15, part 3).

The official trainers save the whole model, including tensors their forward never uses at a
given depth (BMIP: the vision-to-text projection at depth 2, both shared projections at depth 1,
the last unshared vision-to-text projection at every depth). Loading drops exactly those, lists
them in the log, and gives the model the official one was: same tensors, same logits. The
official key sets come from tests/helpers/official_layouts.py (built from the official naming
rules). The end-to-end test evaluates such a checkpoint with train.py --eval-only.
"""
import itertools
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import REPO, run_train
from tests.helpers.methods import CLASSNAMES, images, make_cfg
from tests.helpers.official_layouts import (
    official_bmip_checkpoint,
    official_bmip_unused,
    official_ivlp_checkpoint,
    official_maple_checkpoint,
    official_vpt_checkpoint,
)
from trainers.base import PromptedCLIP
from trainers.bmip import BMIP, BMIPPromptLearner
from trainers.ivlp import IVLP, VPT, IndependentVLPromptLearner, VisionPromptLearner
from trainers.maple import MaPLe, MultiModalPromptLearner

N_CTX = 2
DEPTHS = (1, 2, 3, 9, 12)


def randomise(module, seed):
    """Give every trainable tensor a random value (so that a tensor left at its initial value,
    or taken from the wrong place, shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module


def load_official(trainer_cls, cfg, learner, official):
    """Load ``official`` the way --model-dir does, into a fresh ``learner``."""
    trainer = trainer_cls.__new__(trainer_cls)
    trainer.cfg, trainer.prompt_learner, trainer.num_classes = cfg, learner, len(CLASSNAMES)
    registered = learner
    if trainer_cls.PREFIXED_KEYS:
        registered = nn.Module()
        registered.prompt_learner = learner
    trainer._load_weights_into(registered, official, "official/model.pth.tar-5")
    return learner


def same_model(clip_model, a, b):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    x = images(3, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(PromptedCLIP(clip_model, a)(x), PromptedCLIP(clip_model, b)(x), rtol=0, atol=0)


BMIP_CASES = [(d, sv, st, mode) for d, sv, st in itertools.product(DEPTHS, (True, False), (True, False))
              for mode in (("copies", "alias", "tied") if sv else ("copies",))]


@pytest.mark.parametrize("depth, share_visual, share_text, visual_mode", BMIP_CASES)
def test_official_bmip_checkpoint_loads_at_every_depth(clip_model, capsys, depth, share_visual, share_text,
                                                        visual_mode):
    cfg = make_cfg(BMIP={"PROMPT_DEPTH": depth, "N_CTX": N_CTX, "SHARED_VISUAL_PROMPT": visual_mode})
    cfg.SHARE.SHARE_PARAMETER_VISUAL, cfg.SHARE.SHARE_PARAMETER_TEXT = share_visual, share_text
    torch.manual_seed(0)
    trained = randomise(BMIPPromptLearner(cfg, CLASSNAMES, clip_model), seed=depth)
    if share_visual and visual_mode != "tied" and depth > 1:  # one shared prompt, as the official code trains it
        with torch.no_grad():
            for p in trained.compound_prompts_visual:
                p.copy_(trained.compound_prompts_visual[0])
    official = official_bmip_checkpoint(trained.state_dict(), clip_model, depth, share_visual, share_text,
                                        N_CTX, len(CLASSNAMES))
    torch.manual_seed(1)
    fresh = BMIPPromptLearner(cfg, CLASSNAMES, clip_model)
    capsys.readouterr()
    same_model(clip_model, trained, load_official(BMIP, cfg, fresh, official))
    log = capsys.readouterr().out
    # every tensor the official forward never uses is dropped and named in the log
    dropped_line = next(line for line in log.splitlines() if line.startswith("Dropped "))
    for stem in official_bmip_unused(depth, share_visual, share_text):
        assert stem in dropped_line
    n_gate_keys = 2 * 2 * 2 * 12 - 2 * (depth - 1) - 1 * max(depth - 2, 0)  # loaded: vision w+b, text bias
    n_unused = sum(1 for k in official if any(k == s or k.startswith(s + ".")
                                              for s in official_bmip_unused(depth, share_visual, share_text)))
    assert f"Dropped {n_unused + n_gate_keys} tensor(s)" in dropped_line


def test_bmip_depth_1_tied_has_no_prompt_without_a_layer(clip_model):
    cfg = make_cfg(BMIP={"PROMPT_DEPTH": 1, "SHARED_VISUAL_PROMPT": "tied"}, share=True)
    learner = BMIPPromptLearner(cfg, CLASSNAMES, clip_model)
    assert len(learner.compound_prompts_visual) == 0


def test_incomplete_official_bmip_gates_are_reported_missing(clip_model):
    cfg = make_cfg(BMIP={"PROMPT_DEPTH": 3}, share=True)
    trained = randomise(BMIPPromptLearner(cfg, CLASSNAMES, clip_model), seed=3)
    official = official_bmip_checkpoint(trained.state_dict(), clip_model, 3, True, True, N_CTX, len(CLASSNAMES))
    del official["image_encoder.transformer.resblocks.2.learnable_linear1.bias"]
    with pytest.raises(RuntimeError, match=r"missing keys \['prompt_learner.vision_gates.bias'\]"):
        load_official(BMIP, cfg, BMIPPromptLearner(cfg, CLASSNAMES, clip_model), official)


def test_official_shallow_maple_checkpoint_loads(clip_model):
    cfg = make_cfg(MAPLE={"PROMPT_DEPTH": 1, "N_CTX": N_CTX})
    trained = randomise(MultiModalPromptLearner(cfg, CLASSNAMES, clip_model), seed=4)
    assert len(trained.compound_prompts_text) == 0
    official = official_maple_checkpoint(trained.state_dict(), clip_model, N_CTX, len(CLASSNAMES))
    assert {k for k in official if k.startswith("prompt_learner.") and "token_" not in k} == {
        "prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias"}
    fresh = MultiModalPromptLearner(cfg, CLASSNAMES, clip_model)
    same_model(clip_model, trained, load_official(MaPLe, cfg, fresh, official))


@pytest.mark.parametrize("vision_depth", [1, 0])
def test_official_shallow_ivlp_checkpoint_loads(clip_model, vision_depth):
    cfg = make_cfg(IVLP={"PROMPT_DEPTH_TEXT": 1, "PROMPT_DEPTH_VISION": vision_depth,
                         "N_CTX_TEXT": N_CTX, "N_CTX_VISION": N_CTX})
    trained = randomise(IndependentVLPromptLearner(cfg, CLASSNAMES, clip_model), seed=5)
    vision_ctx = trained.vision.vision_ctx if trained.vision is not None else None
    official = official_ivlp_checkpoint(trained.ctx, vision_ctx, [], [], clip_model, N_CTX, len(CLASSNAMES))
    assert ("image_encoder.VPT" in official) is (vision_depth == 1)
    assert not [k for k in official if "VPT_shallow" in k]
    fresh = IndependentVLPromptLearner(cfg, CLASSNAMES, clip_model)
    same_model(clip_model, trained, load_official(IVLP, cfg, fresh, official))


def test_official_shallow_vpt_checkpoint_loads(clip_model):
    cfg = make_cfg(VPT={"PROMPT_DEPTH_VISION": 1, "N_CTX_VISION": N_CTX})
    trained = randomise(VisionPromptLearner(cfg, CLASSNAMES, clip_model), seed=6)
    official = official_vpt_checkpoint(trained.vision.vision_ctx, [], clip_model)
    assert not [k for k in official if k.startswith("prompt_learner.")]
    fresh = VisionPromptLearner(cfg, CLASSNAMES, clip_model)
    same_model(clip_model, trained, load_official(VPT, cfg, fresh, official))


# ------------------------------------------------------------------------------- end to end
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")
SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")


def bmip_args(root, clip_path, out, share, *flags):
    return [*flags, "--root", root, "--seed", 1, "--trainer", "BMIP", "--dataset-config-file", EUROSAT_CFG,
            "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", clip_path,
            "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 1, "TRAINER.BMIP.PREC", "fp32",
            "TRAINER.BMIP.PROMPT_DEPTH", 2, "SHARE.SHARE_PARAMETER_VISUAL", share,
            "SHARE.SHARE_PARAMETER_TEXT", share]


@pytest.mark.slow
@pytest.mark.parametrize("share", [True, False])
def test_official_depth_2_bmip_checkpoint_evaluates_like_its_model(tmp_path, eurosat_root, tiny_clip_path, share):
    import clip

    trained = str(tmp_path / "trained")
    proc = run_train(*bmip_args(eurosat_root, tiny_clip_path, trained, share))
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(Path(trained, "MultiModalPromptLearner", "model.pth.tar-1"), weights_only=True)
    ours = {k[len("prompt_learner."):]: v for k, v in ckpt["state_dict"].items()}
    clip_model, _ = clip.load(tiny_clip_path, device="cpu")
    n_cls = 10
    official = official_bmip_checkpoint(ours, clip_model, 2, share, share, N_CTX, n_cls)
    official_dir = tmp_path / "official" / "MultiModalPromptLearner"
    official_dir.mkdir(parents=True)
    torch.save({"state_dict": official, "epoch": 1, "optimizer": None, "scheduler": None, "val_result": None},
               official_dir / "model.pth.tar-1")
    results = {}
    for name, model_dir in (("ours", trained), ("official", str(tmp_path / "official"))):
        out = str(tmp_path / f"eval_{name}")
        proc = run_train(*bmip_args(eurosat_root, tiny_clip_path, out, share, "--eval-only", "--model-dir",
                                    model_dir, "--load-epoch", 1))
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[name] = json.loads(Path(out, "results.json").read_text())["metrics"]
        if name == "official":
            dropped = next(line for line in proc.stdout.splitlines() if line.startswith("Dropped "))
            assert ("single_layer_v" if share else "compound_prompt_projections_v.0") in dropped
            assert "ctx_v" in dropped and "proj_v" in dropped
    assert results["official"] == results["ours"]
    assert os.path.isfile(Path(tmp_path, "eval_official", "log.txt"))


def test_official_vit_l14_checkpoints_load():
    """MaPLe's and BMIP's official key layouts at ViT-L/14 (vision 1024 x 24 blocks, text 768 x 12: the
    official code's per-block gates then differ in number per tower) load into ours, tensor for tensor.
    The frozen towers never enter a learner, so they stay on the meta device (no memory, no time)."""
    from clip import openclip
    from clip.model import CLIP

    with torch.device("meta"):
        l14 = CLIP(**openclip.clip_arguments(*openclip.read_config("ViT-L-14")))
    l14.token_embedding = nn.Embedding(49408, 768, _weight=torch.zeros(49408, 768))
    maple_cfg = make_cfg(MAPLE={"PROMPT_DEPTH": 9, "N_CTX": N_CTX})
    trained = randomise(MultiModalPromptLearner(maple_cfg, CLASSNAMES, l14), seed=7)
    official = official_maple_checkpoint(trained.state_dict(), l14, N_CTX, len(CLASSNAMES))
    fresh = load_official(MaPLe, maple_cfg, MultiModalPromptLearner(maple_cfg, CLASSNAMES, l14), official)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert fresh.proj.weight.shape == (1024, 768)

    bmip_cfg = make_cfg(BMIP={"PROMPT_DEPTH": 9, "N_CTX": N_CTX}, share=True)
    trained = randomise(BMIPPromptLearner(bmip_cfg, CLASSNAMES, l14), seed=8)
    with torch.no_grad():
        for p in trained.compound_prompts_visual:
            p.copy_(trained.compound_prompts_visual[0])
    official = official_bmip_checkpoint(trained.state_dict(), l14, 9, True, True, N_CTX, len(CLASSNAMES))
    assert sum(1 for k in official if k.startswith("image_encoder.") and "learnable_linear1.weight" in k) == 24
    fresh = load_official(BMIP, bmip_cfg, BMIPPromptLearner(bmip_cfg, CLASSNAMES, l14), official)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
