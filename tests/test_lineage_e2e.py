"""train.py with CoCoOp, VPT, IVLP (and language-only) and MaPLe on the tiny CLIP:
train, evaluate our checkpoint, and evaluate the same weights saved the way the
official repositories save them (their folder names, key names and extras)."""
import json
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_train
from trainers.ivlp import map_official_ivlp_keys

pytestmark = pytest.mark.slow

SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")

METHODS = {
    # trainer, official folder, method opts
    "CoCoOp": ("CoCoOp", "prompt_learner", ["TRAINER.COCOOP.N_CTX", 4, "TRAINER.COCOOP.PREC", "fp32"]),
    "VPT": ("VPT", "prompt_learner", ["TRAINER.VPT.N_CTX_VISION", 4, "TRAINER.VPT.PROMPT_DEPTH_VISION", 6,
                                      "TRAINER.VPT.PREC", "fp32"]),
    "IVLP": ("IVLP", "VLPromptLearner", ["TRAINER.IVLP.PROMPT_DEPTH_VISION", 9,
                                         "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 9, "TRAINER.IVLP.PREC", "fp32"]),
    "LanguageOnly": ("IVLP", "VLPromptLearner", ["TRAINER.IVLP.N_CTX_VISION", 0, "TRAINER.IVLP.N_CTX_TEXT", 4,
                                                 "TRAINER.IVLP.PROMPT_DEPTH_VISION", 0,
                                                 "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 12, "TRAINER.IVLP.PREC", "fp32"]),
    "MaPLe": ("MaPLe", "MultiModalPromptLearner", ["TRAINER.MAPLE.PROMPT_DEPTH", 9, "TRAINER.MAPLE.PREC", "fp32"]),
}


def args_for(method, root, clip_path, out, flags=()):
    trainer, _, opts = METHODS[method]
    return [*flags, "--root", root, "--seed", 1, "--trainer", trainer,
            "--dataset-config-file", EUROSAT_CFG, "--config-file", SMOKE_CFG,
            "--output-dir", out, "--backbone", clip_path,
            "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", 1, *opts]


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def accuracy(out):
    return json.loads(Path(out, "results.json").read_text())["metrics"]["accuracy"]


def official_state_dict(method, ours, clip_path, n_cls):
    """Our checkpoint's weights renamed and padded the way the official trainer saves them."""
    sd = dict(ours)
    if method in ("IVLP", "LanguageOnly", "VPT"):
        probe = {}
        for k in sd:  # invert the documented official -> ours mapping key by key
            if k.endswith("vision.vision_ctx"):
                probe[k] = "image_encoder.VPT"
            elif ".deep_vision_prompts." in k:
                probe[k] = f"image_encoder.transformer.resblocks.{int(k.rsplit('.', 1)[1]) + 1}.VPT_shallow"
            elif ".deep_text_prompts." in k:
                probe[k] = f"text_encoder.transformer.resblocks.{int(k.rsplit('.', 1)[1]) + 1}.VPT_shallow"
            else:
                probe[k] = k
        inverse = {probe[k]: v for k, v in sd.items()}
        assert set(map_official_ivlp_keys(inverse, "prompt_learner.vision")) == set(sd)
        sd = inverse
    prefix = "" if method == "CoCoOp" else "prompt_learner."
    width = sd[f"{prefix}ctx"].shape[-1] if f"{prefix}ctx" in sd else 64
    sd[f"{prefix}token_prefix"] = torch.zeros(n_cls, 1, width)
    sd[f"{prefix}token_suffix"] = torch.zeros(n_cls, 70, width)
    if prefix:  # whole-model registrations also carry the frozen CLIP
        frozen = torch.load(clip_path, weights_only=True)
        sd["image_encoder.conv1.weight"] = frozen["visual.conv1.weight"]
        sd["text_encoder.positional_embedding"] = frozen["positional_embedding"]
        sd["logit_scale"] = frozen["logit_scale"]
    return sd


@pytest.mark.parametrize("method", list(METHODS))
def test_train_evaluate_and_load_official_layout(tmp_path, eurosat_root, tiny_clip_path, method):
    _, folder, _ = METHODS[method]
    out = str(tmp_path / "train")
    ok(run_train(*args_for(method, eurosat_root, tiny_clip_path, out)))
    ckpt_path = Path(out, folder, "model.pth.tar-1")
    assert ckpt_path.is_file()
    ckpt = torch.load(ckpt_path, weights_only=True)
    # only the prompt learner is checkpointed: no frozen CLIP weights, no class-name buffers
    assert not any(k.startswith(("image_encoder.", "text_encoder.", "clip_model.")) or "token_" in k
                   for k in ckpt["state_dict"])
    results = json.loads(Path(out, "results.json").read_text())
    assert results["num_classes"] == 5 and results["subsample_classes"] == "base"

    # the same weights in the official layout evaluate to the same accuracy
    official = tmp_path / "official"
    (official / folder).mkdir(parents=True)
    torch.save({"state_dict": official_state_dict(method, ckpt["state_dict"], tiny_clip_path, 5),
                "epoch": 1, "optimizer": None, "scheduler": None, "val_result": None},
               official / folder / "model.pth.tar-1")
    out_eval = str(tmp_path / "eval")
    ok(run_train(*args_for(method, eurosat_root, tiny_clip_path, out_eval,
                           flags=("--eval-only", "--model-dir", str(official), "--load-epoch", 1))))
    assert accuracy(out_eval) == accuracy(out)


def test_deep_prompting_on_resnet_fails_clearly(tmp_path, eurosat_root):
    from tests.helpers.tiny_clip import save_tiny_clip

    rn = save_tiny_clip(tmp_path / "rn.pt", kind="rn", seed=0)
    args = args_for("MaPLe", eurosat_root, str(rn), str(tmp_path / "o")) + ["INPUT.SIZE", "(64, 64)"]
    proc = run_train(*args)
    assert proc.returncode != 0
    assert "trainer MaPLe" in proc.stderr and "needs a ViT backbone" in proc.stderr
