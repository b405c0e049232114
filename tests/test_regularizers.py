"""PromptSRC and CoPrompt as regularizers over any prompting base (trainers/composition.py).

* composition: every (regularizer, base) pair is a registered trainer, a base registered later
  gets its compositions, and no composition has a class of its own in the source;
* parity: each loss term equals our re-derivation of the official formulas (fp32, 1e-5), on
  random features and through a real forward of the tiny CLIP; the GPA weights equal the
  official per-epoch weights; the adapters are the official residual adapters;
* configs: the official config files merge unchanged, and the official layouts (prompt keys in
  the regularizer's node) reach the base; official checkpoints (whole model, frozen copies
  included) load;
* end to end (slow): every trainer name trains, tests and evaluates its checkpoint; PromptSRC's
  aggregate survives a resume exactly.
"""
import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import clip
import trainers
from conftest import REPO, run_train
from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY
from tests.helpers.methods import CLASSNAMES, images, make_cfg
from tests.helpers.official_layouts import (
    frozen_clip_keys,
    official_bmip_checkpoint,
    official_ivlp_checkpoint,
    official_maple_checkpoint,
)
from trainers.base import PromptedCLIP, TrainingOutput
from trainers.composition import RegularizedCLIP, composable_bases, register_compositions
from trainers.coprompt import ResidualAdapter, consistency_loss, read_descriptions
from trainers.ivlp import IndependentVLPromptLearner
from trainers.promptsrc import ensemble_templates, gpa_weights, promptsrc_losses

NAMES = ["PromptSRC", "CoPrompt", "PromptSRC_MaPLe", "PromptSRC_BMIP", "PromptSRC_Bloom", "CoPrompt_BMIP",
         "CoPrompt_Bloom"]


# ------------------------------------------------------------------------------- composition
def test_every_regularizer_composes_with_every_prompting_base():
    bases = sorted(cls.__name__ for cls in composable_bases())
    assert bases == ["BMIP", "Bloom", "CoOp", "IVLP", "MaPLe", "VPT"]  # not ZeroshotCLIP, not CoCoOp
    for name in NAMES + ["PromptSRC_CoOp", "PromptSRC_VPT", "CoPrompt_IVLP", "CoPrompt_CoOp", "CoPrompt_VPT"]:
        cls = TRAINER_REGISTRY.get(name)
        assert cls.BASE.__name__ in bases
    assert TRAINER_REGISTRY.get("PromptSRC").BASE.__name__ == "IVLP"
    assert TRAINER_REGISTRY.get("CoPrompt").BASE.__name__ == "MaPLe"
    assert "PromptSRC_IVLP" not in TRAINER_REGISTRY and "CoPrompt_MaPLe" not in TRAINER_REGISTRY
    # no class per pair in the source: every composition is built by register_compositions
    source = "".join(p.read_text() for p in (REPO / "trainers").glob("*.py"))
    for name in NAMES[2:]:
        assert f"class {name}" not in source


def test_a_base_registered_later_gets_every_regularizer():
    from trainers.maple import MaPLe

    class LaterBase(MaPLe):
        pass

    TRAINER_REGISTRY.register(LaterBase)
    try:
        register_compositions()
        for name in ("PromptSRC_LaterBase", "CoPrompt_LaterBase"):
            assert TRAINER_REGISTRY.get(name).BASE is LaterBase
    finally:
        for name in ("LaterBase", "PromptSRC_LaterBase", "CoPrompt_LaterBase"):
            TRAINER_REGISTRY._obj_map.pop(name, None)


# ---------------------------------------------------------------------------------- parity
def official_promptsrc_terms(logits, text, template_mean, image, frozen_image, scale, w_text, w_image):
    """The official PromptSRC loss terms, re-derived: template_mean is the mean of the unnormalised
    template features; KL(q || p) summed over the batch and divided by batch x classes."""
    targets = template_mean / template_mean.norm(dim=-1, keepdim=True)
    zero_shot = scale * frozen_image @ targets.t()
    log_p, log_q = logits.log_softmax(dim=1), zero_shot.log_softmax(dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum() / logits.numel()
    return {
        "loss_text": w_text * (text - targets).abs().mean(),
        "loss_image": w_image * (image - frozen_image).abs().mean(),
        "loss_kl": kl,
    }


def test_promptsrc_terms_equal_the_official_formulas_on_random_features():
    g = torch.Generator().manual_seed(0)
    n, c, d = 6, 5, 32
    text = F.normalize(torch.randn(c, d, generator=g), dim=-1)
    image = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    frozen = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    template_mean = torch.randn(c, d, generator=g) * 3
    scale = torch.tensor(100.0)
    logits = scale * image @ text.t()
    label = torch.tensor([0, 1, 2, 3, 4, 0])
    output = TrainingOutput(logits, image, text, {"frozen_image_features": frozen, "logit_scale": scale})
    ours = promptsrc_losses(output, label, F.normalize(template_mean, dim=-1), 25, 10)
    official = official_promptsrc_terms(logits, text, template_mean, image, frozen, scale, 25, 10)
    for key, value in official.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["loss_ce"], F.cross_entropy(logits, label))
    # the KL is the per-batch KL divided by the class count too (not F.kl_div's "batchmean")
    batchmean = F.kl_div(logits.log_softmax(1), (scale * frozen @ F.normalize(template_mean, dim=-1).t()).log_softmax(1),
                         reduction="batchmean", log_target=True)
    torch.testing.assert_close(ours["loss_kl"] * c, batchmean, rtol=1e-5, atol=1e-7)


def test_promptsrc_forward_uses_the_unprompted_clip_and_the_template_ensemble(clip_model):
    """Through a real forward: frozen image features are CLIP without prompts (the same
    weights), and the targets are the 60-template mean of CLIP's text features."""
    cfg = make_cfg(IVLP={"N_CTX_TEXT": 2, "N_CTX_VISION": 2, "PROMPT_DEPTH_TEXT": 3, "PROMPT_DEPTH_VISION": 3})
    torch.manual_seed(0)
    prompted = PromptedCLIP(clip_model, IndependentVLPromptLearner(cfg, CLASSNAMES, clip_model))
    x = images(4, seed=3)
    output = RegularizedCLIP(prompted)(x)
    with torch.no_grad():
        frozen = F.normalize(clip_model.encode_image(x), dim=-1)
        per_template = torch.stack([clip_model.encode_text(clip.tokenize([t.format(c) for c in CLASSNAMES]))
                                    for t in ensemble_templates()])
    torch.testing.assert_close(output.extras["frozen_image_features"], frozen, rtol=0, atol=1e-6)
    torch.testing.assert_close(output.logits, prompted(x), rtol=0, atol=1e-5)
    from trainers.composition import frozen_text_features

    ours = frozen_text_features(clip_model, [t.format(c) for t in ensemble_templates() for c in CLASSNAMES], "cpu")
    torch.testing.assert_close(ours.view(60, len(CLASSNAMES), -1).mean(0), per_template.mean(0), rtol=0, atol=1e-5)
    label = torch.tensor([0, 1, 2, 3])
    terms = promptsrc_losses(output, label, F.normalize(per_template.mean(0), dim=-1), 25, 10)
    official = official_promptsrc_terms(output.logits, output.text_features, per_template.mean(0),
                                        output.image_features, frozen, output.extras["logit_scale"], 25, 10)
    for key, value in official.items():
        torch.testing.assert_close(terms[key], value, rtol=0, atol=1e-5)
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in prompted.prompt_learner.parameters())


def test_the_ensemble_is_the_official_60_templates():
    templates = ensemble_templates()
    assert len(templates) == 60 == len(set(templates))
    assert templates[:3] == ["a photo of a {}.", "a bad photo of a {}.", "a photo of many {}."]
    assert templates[-1] == "itap of the {}." and "a jpeg corrupted photo of the {}." not in templates


def test_gpa_weights_are_the_official_per_epoch_weights():
    # the official numpy computation's values (muzairkhattak/PromptSRC configs: 15/1 over 20 epochs,
    # 6/10 over 20 for cross-dataset; LAMDASZ-ML/BMIP's adam configs: 15/3)
    w = gpa_weights(15, 1, 20)
    assert sum(w) == pytest.approx(1.0, abs=1e-12)
    for epoch, value in ((15, 0.398942), (14, 0.241971), (16, 0.241971), (13, 0.053991), (12, 0.00443185),
                         (20, 1.48672e-06), (10, 1.48672e-06)):
        assert w[epoch - 1] == pytest.approx(value, rel=1e-5)
    assert w[0] == pytest.approx(1.1e-43, rel=0.1)
    w = gpa_weights(6, 10, 20)
    assert (w[0], w[5], w[19]) == pytest.approx((0.055402, 0.0627787, 0.0235615), rel=1e-5)
    w = gpa_weights(15, 3, 20)
    assert (w[14], w[0]) == pytest.approx((0.137483, 2.56605e-06), rel=1e-5)


def test_coprompt_adapter_and_consistency_equal_the_official_formulas():
    g = torch.Generator().manual_seed(1)
    adapter = ResidualAdapter(32, 4, 0.2)
    assert [k for k in adapter.state_dict()] == ["fc.0.weight", "fc.2.weight"]  # official names, no biases
    x = torch.randn(5, 32, generator=g)
    w1, w2 = adapter.fc[0].weight, adapter.fc[2].weight
    torch.testing.assert_close(adapter(x), 0.2 * torch.relu(torch.relu(x @ w1.t()) @ w2.t()) + 0.8 * x)
    text = F.normalize(torch.randn(4, 32, generator=g), dim=-1)
    image = F.normalize(torch.randn(6, 32, generator=g), dim=-1)
    frozen = F.normalize(torch.randn(6, 32, generator=g), dim=-1)
    description = torch.randn(4, 32, generator=g)
    output = TrainingOutput(torch.zeros(6, 4), image, text, {"frozen_image_features": frozen})
    target = description / description.norm(dim=-1, keepdim=True)
    cos = lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))  # noqa: E731
    expected_cos = (1 - cos(text, target).mean()) + (1 - cos(image, frozen).mean())
    torch.testing.assert_close(consistency_loss(output, description, "cosine"), expected_cos, rtol=0, atol=1e-6)
    expected_mse = ((text - target) ** 2).mean() + ((image - frozen) ** 2).mean()
    torch.testing.assert_close(consistency_loss(output, description, "mse"), expected_mse, rtol=0, atol=1e-6)


def test_description_files_are_read_strictly(tmp_path):
    path = tmp_path / "eurosat_prompt.json"
    path.write_text(json.dumps({"Forest": ["a forest.", "trees."], "River": ["a river.", "water."]}))
    assert read_descriptions(str(path), ["Forest", "River"])["River"] == ["a river.", "water."]
    with pytest.raises(KeyError, match=rf"{path} has no descriptions for class 'Sea or Lake'"):
        read_descriptions(str(path), ["Forest", "Sea or Lake"])
    with pytest.raises(FileNotFoundError, match=r"TRAINER.CoPrompt.DESCRIPTIONS: no description file .*missing.json .*"
                                                r"copy gpt_file/ from the official CoPrompt repository"):
        read_descriptions(str(tmp_path / "missing.json"), ["Forest"])
    path.write_text(json.dumps({"Forest": ["a forest."], "River": ["a river.", "water."]}))
    with pytest.raises(ValueError, match="every class needs the same number of descriptions"):
        read_descriptions(str(path), ["Forest", "River"])


def test_minishapes_descriptions_are_shipped_and_complete():
    from datasets import minishapes as world

    table = json.loads((REPO / "gpt_file" / "minishapes_prompt.json").read_text())
    names = [world.classname(*pair) for pair in world.compositions()]
    assert sorted(table) == sorted(names)
    assert {len(v) for v in table.values()} == {10}
    assert all("red" in s or "circle" in s for s in table["red circle"])
    tokens = clip.tokenize([s for v in table.values() for s in v])  # all fit in 77 tokens
    assert tokens.shape[0] == 640


# --------------------------------------------------------------------------------- configs
OFFICIAL_CONFIGS = {
    "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml": ("PromptSRC", {"IVLP.N_CTX_TEXT": 4, "IVLP.PROMPT_DEPTH_VISION": 9},
                                                     {"GPA_MEAN": 15, "GPA_STD": 1}, 20),
    "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml": ("PromptSRC", {"IVLP.PROMPT_DEPTH_TEXT": 3},
                                                                     {"GPA_MEAN": 6, "GPA_STD": 10}, 20),
    "PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml": ("PromptSRC", {"IVLP.N_CTX_VISION": 4},
                                                              {"GPA_MEAN": 30, "GPA_STD": 30}, 50),
    "PromptSRC_BMIP/vit_bitp_ctx4_ep20TT_adam_PromptSRC.yaml": ("PromptSRC_BMIP", {"BMIP.N_CTX": 4, "BMIP.PROMPT_DEPTH": 9},
                                                                {"GPA_MEAN": 15, "GPA_STD": 3}, 20),
    "CoPrompt/coprompt.yaml": ("CoPrompt", {"MAPLE.N_CTX": 2, "MAPLE.PROMPT_DEPTH": 9}, {}, 8),
}


@pytest.mark.parametrize("path", sorted(OFFICIAL_CONFIGS))
def test_official_configs_merge_and_reach_the_base(path):
    name, base_values, node_values, epochs = OFFICIAL_CONFIGS[path]
    cfg = get_cfg_default()
    trainers.add_trainer_configs(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / path))
    cfg.TRAINER.NAME = name
    cfg.freeze()
    cls = TRAINER_REGISTRY.get(name)
    trainer = cls.__new__(cls)
    base_cfg = trainer.base_config(cfg)
    for key, value in base_values.items():
        node, item = key.split(".")
        assert base_cfg.TRAINER[node][item] == value
    for key, value in node_values.items():
        assert cfg.TRAINER[cls.CFG_NODE][key] == value
    assert cfg.OPTIM.MAX_EPOCH == epochs


def test_coprompt_applies_the_official_per_dataset_settings():
    from trainers.coprompt import CoPromptRegularizer

    for name, dataset, expected in (("CoPrompt", "EuroSAT", {"N_CTX": 2, "PROMPT_DEPTH": 12, "W": 0.1}),
                                    ("CoPrompt", "Food101", {"N_CTX": 4, "PROMPT_DEPTH": 9, "W": 0.5, "MAX_EPOCH": 5}),
                                    ("CoPrompt_Bloom", "EuroSAT", {"N_CTX": 2, "PROMPT_DEPTH": 9, "W": 0.1}),
                                    ("CoPrompt", "MiniShapes", {"N_CTX": 2, "PROMPT_DEPTH": 9, "W": 1.0})):
        cfg = get_cfg_default()
        trainers.add_trainer_configs(cfg)
        cfg.merge_from_file(str(REPO / "configs/trainers/CoPrompt/coprompt.yaml"))
        cfg.TRAINER.NAME, cfg.DATASET.NAME = name, dataset
        CoPromptRegularizer.adjust_cfg(cfg)
        got = {"N_CTX": cfg.TRAINER.CoPrompt.N_CTX, "PROMPT_DEPTH": cfg.TRAINER.CoPrompt.PROMPT_DEPTH,
               "W": cfg.TRAINER.W, "MAX_EPOCH": cfg.OPTIM.MAX_EPOCH}
        assert {k: got[k] for k in expected} == expected, (name, dataset)
    cfg.TRAINER.CoPrompt.DATASET_SETTINGS = False
    cfg.DATASET.NAME, cfg.TRAINER.NAME, cfg.TRAINER.W = "EuroSAT", "CoPrompt", 1.0
    CoPromptRegularizer.adjust_cfg(cfg)
    assert cfg.TRAINER.W == 1.0


# ----------------------------------------------------------------------------- checkpoints
def _loader(name, cfg, learner, extra_modules=None):
    cls = TRAINER_REGISTRY.get(name)
    trainer = cls.__new__(cls)
    trainer.cfg, trainer.prompt_learner, trainer.num_classes = cfg, learner, len(CLASSNAMES)
    registered = nn.Module()
    registered.prompt_learner = learner
    for key, module in (extra_modules or {}).items():
        registered.add_module(key, module)
    return trainer, registered


def test_official_promptsrc_checkpoint_drops_the_frozen_teacher(clip_model):
    cfg = make_cfg(IVLP={"N_CTX_TEXT": 2, "N_CTX_VISION": 2, "PROMPT_DEPTH_TEXT": 3, "PROMPT_DEPTH_VISION": 3})
    trained = IndependentVLPromptLearner(cfg, CLASSNAMES, clip_model)
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_()
    official = official_ivlp_checkpoint(trained.ctx, trained.vision.vision_ctx, list(trained.deep_text_prompts),
                                        list(trained.vision.deep_vision_prompts), clip_model, 2, len(CLASSNAMES))
    assert_promptsrc_checkpoint_loads("PromptSRC", cfg, trained, IndependentVLPromptLearner(cfg, CLASSNAMES, clip_model),
                                      official, clip_model)


def assert_promptsrc_checkpoint_loads(name, cfg, trained, fresh, official, clip_model):
    """``official`` plus PromptSRC's own frozen copy of the image encoder (``ZS_image_encoder``), loaded
    the way --model-dir does, gives ``fresh`` exactly ``trained``'s tensors."""
    official = dict(official)
    official.update({f"prompt_learner.ZS_image_encoder.{k[len('image_encoder.'):]}": v
                     for k, v in frozen_clip_keys(clip_model).items() if k.startswith("image_encoder.")})
    trainer, registered = _loader(name, cfg, fresh)
    trainer._load_weights_into(registered, official, "VLPromptLearner/model.pth.tar-20")
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_official_promptsrc_bmip_checkpoint_loads(clip_model):
    from trainers.bmip import BMIPPromptLearner

    cfg = make_cfg(BMIP={"PROMPT_DEPTH": 4, "N_CTX": 2}, share=True)
    trained = BMIPPromptLearner(cfg, CLASSNAMES, clip_model)
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_()
        for p in trained.compound_prompts_visual:
            p.copy_(trained.compound_prompts_visual[0])
    official = official_bmip_checkpoint(trained.state_dict(), clip_model, 4, True, True, 2, len(CLASSNAMES))
    official = {k: v for k, v in official.items() if "exchange" not in k}  # PromptSRC_BMIP has no exchange layers
    official["prompt_learner.ctx"] = torch.randn(2, clip_model.text_width)  # its dead copy of the initial context
    assert_promptsrc_checkpoint_loads("PromptSRC_BMIP", cfg, trained, BMIPPromptLearner(cfg, CLASSNAMES, clip_model),
                                      official, clip_model)


def test_official_coprompt_checkpoint_loads_prompts_and_adapters(clip_model):
    from trainers.maple import MultiModalPromptLearner

    cfg = make_cfg(MAPLE={"PROMPT_DEPTH": 3, "N_CTX": 2})
    trained = MultiModalPromptLearner(cfg, CLASSNAMES, clip_model)
    adapters = {"adapter_image": ResidualAdapter(clip_model.embed_dim, 4, 0.1),
                "adapter_text": ResidualAdapter(clip_model.embed_dim, 4, 0.2)}
    with torch.no_grad():
        for module in [trained, *adapters.values()]:
            for p in module.parameters():
                p.normal_()
    official = official_maple_checkpoint(trained.state_dict(), clip_model, 2, len(CLASSNAMES))
    for name, adapter in adapters.items():
        official.update({f"{name}.{k}": v for k, v in adapter.state_dict().items()})
    official.update({f"model_distill.{k}": v for k, v in clip_model.state_dict().items()})  # a whole second CLIP
    fresh_adapters = {"adapter_image": ResidualAdapter(clip_model.embed_dim, 4, 0.1),
                      "adapter_text": ResidualAdapter(clip_model.embed_dim, 4, 0.2)}
    fresh = MultiModalPromptLearner(cfg, CLASSNAMES, clip_model)
    trainer, registered = _loader("CoPrompt", cfg, fresh, fresh_adapters)
    trainer._load_weights_into(registered, official, "MultiModalPromptLearner/model.pth.tar-8")
    for key, value in official.items():
        if key.startswith(("adapter_", "prompt_learner.")) and "token_" not in key:
            assert torch.equal(registered.state_dict()[key], value), key


# ------------------------------------------------------------------------------ end to end
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")
SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CLASSES = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
                   "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River",
                   "Sea or Lake"]


@pytest.fixture(scope="module")
def descriptions(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt") / "eurosat_prompt.json"
    path.write_text(json.dumps({c: [f"a satellite photo of {c}.", f"{c} seen from above.", f"an aerial view of {c}."]
                                for c in EUROSAT_CLASSES}))
    return str(path)


def reg_args(root, clip_path, out, name, descriptions, *extra, epochs=1, flags=()):
    args = [*flags, "--root", root, "--seed", 1, "--trainer", name, "--dataset-config-file", EUROSAT_CFG,
            "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", clip_path,
            "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", epochs]
    node = TRAINER_REGISTRY.get(name).CFG_NODE
    args += [f"TRAINER.{node}.PREC", "fp32"]
    if node == "CoPrompt":
        args += ["DATALOADER.K_TRANSFORMS", 2, "TRAINER.CoPrompt.DESCRIPTIONS", descriptions]
    return args + list(extra)


def results(out):
    return json.loads(Path(out, "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_composition_trains_tests_and_evaluates_its_checkpoint(tmp_path, eurosat_root, tiny_clip_path,
                                                                     descriptions, name):
    out = tmp_path / "train"
    proc = run_train(*reg_args(eurosat_root, tiny_clip_path, out, name, descriptions))
    assert proc.returncode == 0, proc.stderr[-3000:]
    cls = TRAINER_REGISTRY.get(name)
    ckpt = torch.load(out / cls.MODEL_NAME / "model.pth.tar-1", weights_only=True)
    keys = set(ckpt["state_dict"])
    assert keys and all(k.startswith(("prompt_learner.", "adapter_")) for k in keys)
    assert any(k.startswith("adapter_image.fc.0") for k in keys) is name.startswith("CoPrompt")
    log = (out / "log.txt").read_text()
    assert "loss_kl" in log if name.startswith("PromptSRC") else "loss_consistency" in log
    trained = sum(v.numel() for v in ckpt["state_dict"].values())
    assert f"# trainable params: {trained:,}" in log
    proc = run_train(*reg_args(eurosat_root, tiny_clip_path, tmp_path / "eval", name, descriptions,
                               flags=("--eval-only", "--model-dir", out, "--load-epoch", 1)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results(tmp_path / "eval")["metrics"]["accuracy"] == results(out)["metrics"]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["PromptSRC_Bloom", "CoPrompt"])
def test_a_resumed_run_ends_like_an_uninterrupted_one(tmp_path, eurosat_root, tiny_clip_path, descriptions, name):
    """PromptSRC's running aggregate (and CoPrompt's description draws) survive a resume exactly."""
    out = tmp_path / "run"
    args = reg_args(eurosat_root, tiny_clip_path, out, name, descriptions, "TRAIN.CHECKPOINT_FREQ", 1,
                    "TRAINER.PROMPTSRC.GPA_MEAN", 2, epochs=3)
    assert run_train(*args).returncode == 0
    folder = out / TRAINER_REGISTRY.get(name).MODEL_NAME
    done, final = results(out)["metrics"], torch.load(folder / "model.pth.tar-3", weights_only=True)
    if name.startswith("PromptSRC"):
        assert "gpa_sum" in final["trainer_state"]
    for path in (out / "results.json", folder / "model.pth.tar-3", folder / "model.pth.tar-2"):
        path.unlink()
    proc = run_train(*args)
    assert proc.returncode == 0 and "will resume training" in proc.stdout
    assert results(out)["metrics"] == done
    again = torch.load(folder / "model.pth.tar-3", weights_only=True)
    for key, value in final["state_dict"].items():
        assert torch.equal(again["state_dict"][key], value), key
