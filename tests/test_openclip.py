"""openclip:<model> backbones: our CLIP against open_clip's own models, configs, weights files and
preprocessing; every method on a tiny open_clip model from train.py."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clip
from clip import openclip
from conftest import REPO, run_train
from tests.helpers.tiny_openclip import TINY_NATIVE, TINY_SIGLIP, save_open_clip_model, save_tiny_hf_tokenizer

FAMILIES = {
    # open_clip's native ViT (LAION / DataComp ViT-B-16 style): exact GELU
    "native-gelu": dict(TINY_NATIVE, vision_cfg=dict(TINY_NATIVE["vision_cfg"], layers=3),
                        text_cfg=dict(TINY_NATIVE["text_cfg"], layers=2)),
    # ViT-B-16-quickgelu style (OpenAI-trained recipe), another patch size and head width
    "native-quickgelu": {"embed_dim": 24, "quick_gelu": True,
                         "vision_cfg": {"image_size": 48, "layers": 2, "width": 96, "head_width": 32, "patch_size": 16},
                         "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 48, "heads": 3, "layers": 2}},
    # ViT-L-14's shape ratios (patch 14, text width = embed dim, more heads than width // 64) and a
    # custom-text model's key layout (text.*), wider MLPs
    "l14-shaped-custom-text": {"embed_dim": 48, "custom_text": True,
                               "vision_cfg": {"image_size": 28, "layers": 2, "width": 64, "head_width": 16,
                                              "patch_size": 14, "mlp_ratio": 2.0},
                               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 4,
                                            "layers": 2, "mlp_ratio": 3.0}},
}


def features(model, images, tokens, hook=None):
    if hook is None:
        return (F.normalize(model.encode_image(images), dim=-1), F.normalize(model.encode_text(tokens), dim=-1))
    image = model.encode_image(images, hook=hook)
    text = model.encode_text(tokens, hook=hook)
    return F.normalize(image, dim=-1), F.normalize(text, dim=-1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_features_equal_open_clips_own(tmp_path, family):
    config = FAMILIES[family]
    fmt = {"native-gelu": "bin", "native-quickgelu": "safetensors", "l14-shaped-custom-text": "pt"}[family]
    json_path, weights, reference = save_open_clip_model(tmp_path, config, seed=3, fmt=fmt,
                                                         wrap="state_dict" if fmt == "pt" else None)
    model, preprocess = clip.load(f"openclip:{json_path}", pretrained=weights)
    size = config["vision_cfg"]["image_size"]
    assert model.image_resolution == size and model.context_length == config["text_cfg"]["context_length"]
    assert model.activation == ("quick_gelu" if config.get("quick_gelu") else "gelu")
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    tokens = clip.tokenize(["a photo of a dog.", "an aerial view of a river", "x"],
                           context_length=config["text_cfg"]["context_length"])
    with torch.no_grad():
        ours = features(model, images, tokens)
        theirs = F.normalize(reference.encode_image(images), dim=-1), F.normalize(reference.encode_text(tokens), dim=-1)
        assert (ours[0] - theirs[0]).abs().max() < 1e-5 and (ours[1] - theirs[1]).abs().max() < 1e-5
        # the hook path every method uses visits each block of both towers and, doing nothing,
        # changes nothing
        visited = []

        def identity(i, x, block):
            visited.append(i)
            return block(x)

        hooked = features(model, images, tokens, hook=identity)
    assert visited == list(range(config["vision_cfg"]["layers"])) + list(range(config["text_cfg"]["layers"]))
    assert torch.equal(hooked[0], ours[0]) and torch.equal(hooked[1], ours[1])
    assert (model.logit_scale - reference.logit_scale).abs() == 0


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    return save_tiny_hf_tokenizer(tmp_path_factory.mktemp("hf-tokenizer"))


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory, hf_tokenizer):
    json_path, weights, reference = save_open_clip_model(tmp_path_factory.mktemp("siglip"), TINY_SIGLIP, seed=5,
                                                         fmt="safetensors", name="tiny-siglip")
    return json_path, weights, reference


def test_siglip_features_and_logits_equal_open_clips_own(tiny_siglip, hf_tokenizer):
    """SigLIP (timm trunk without class token, attention pooling; bidirectional text pooled at the last
    position, projection bias, logit bias; a Hugging Face tokenizer) against open_clip's own model."""
    from open_clip.tokenizer import HFTokenizer

    json_path, weights, reference = tiny_siglip
    model, _ = clip.load(f"openclip:{json_path}", pretrained=weights, tokenizer=hf_tokenizer)
    assert (model.visual.num_prefix_tokens, model.visual.pool, model.text_causal, model.text_pool) == (0, "map", False,
                                                                                                       "last")
    assert model.visual.transformer.resblocks[0].n_head == 1 and len(model.visual.transformer.resblocks) == 12
    texts = ["A photo of a Red circle.", "x x x x forest", "satellite view of the sea or lake!"]
    tokens = model.text_tokenizer.tokenize(texts)
    assert torch.equal(tokens, HFTokenizer(hf_tokenizer, context_length=32, clean="canonicalize")(texts))
    assert model.text_tokenizer.prefix_length == 0 and tokens[1, :4].tolist() == [model.text_tokenizer.encode("x")[0]] * 4
    assert model.pool_indices(tokens).tolist() == [31] * 3 and model.text_length_needed(tokens) == 32
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    visited = []

    def identity(i, x, block):
        visited.append(i)
        return block(x)

    with torch.no_grad():
        ours = features(model, images, tokens)
        theirs = F.normalize(reference.encode_image(images), dim=-1), F.normalize(reference.encode_text(tokens), dim=-1)
        hooked = features(model, images, tokens, hook=identity)
        logits = model(images, tokens)[0]
    assert (ours[0] - theirs[0]).abs().max() < 1e-5 and (ours[1] - theirs[1]).abs().max() < 1e-5
    assert torch.equal(hooked[0], ours[0]) and torch.equal(hooked[1], ours[1]) and visited == list(range(12)) * 2
    expected = reference.logit_scale.exp() * theirs[0] @ theirs[1].t() + reference.logit_bias
    assert (logits - expected).abs().max() < 1e-4 and model.logit_bias.item() == reference.logit_bias.item()


def test_siglip_needs_its_tokenizer_files(tiny_siglip, tmp_path):
    json_path, weights, _ = tiny_siglip
    with pytest.raises(ValueError, match=r"set MODEL.BACKBONE.TOKENIZER to a local folder with the tokenizer files of "
                                         r"the Hugging Face repository timm/ViT-B-16-SigLIP"):
        clip.load(f"openclip:{json_path}", pretrained=weights)
    with pytest.raises(FileNotFoundError, match=r"MODEL.BACKBONE.TOKENIZER /no/such/folder is not a folder"):
        clip.load(f"openclip:{json_path}", pretrained=weights, tokenizer="/no/such/folder")
    with pytest.raises(RuntimeError, match=r"MODEL.BACKBONE.TOKENIZER .*empty: cannot load the tokenizer files"):
        clip.load(f"openclip:{json_path}", pretrained=weights, tokenizer=str((tmp_path / "empty").mkdir() or
                                                                              tmp_path / "empty"))


def load_family(family, tmp_path, tiny_siglip, hf_tokenizer):
    """Our model of a tiny open_clip-built model: "native" (GELU ViT, saved here) or "siglip"."""
    if family == "native":
        json_path, weights, _ = save_open_clip_model(tmp_path, FAMILIES["native-gelu"])
    else:
        json_path, weights, _ = tiny_siglip
    model, _ = clip.load(f"openclip:{json_path}", pretrained=weights,
                         tokenizer=hf_tokenizer if family == "siglip" else None)
    return model


@pytest.mark.parametrize("family", ["native", "siglip"])
def test_deep_prompts_reach_every_layer_of_an_open_clip_model(tmp_path, tiny_siglip, hf_tokenizer, family):
    """Replacing the prompt positions in any block through the hook changes the features: prompts at
    layer i are read by layers i..end, in both towers, on both families."""
    model = load_family(family, tmp_path, tiny_siglip, hf_tokenizer)
    images = torch.randn(2, 3, 32, 32)
    width = model.vision_width
    prompts = torch.zeros(2, width)
    base = model.encode_image(images, prompts=prompts)
    for layer in range(model.visual.transformer.layers):
        def deep(i, x, block, layer=layer):
            if i == layer:
                noise = torch.randn(x[:, -2:].shape, generator=torch.Generator().manual_seed(i))
                x = torch.cat([x[:, :-2], noise], dim=1)
            return block(x)
        with torch.no_grad():
            changed = model.encode_image(images, prompts=prompts, hook=deep)
        assert (changed - base).abs().max() > 1e-4, layer
    # text: the context positions (after the start token on CLIP, from position 0 on SigLIP), at
    # every layer, reach the pooled feature (the end token under the causal mask, the last position
    # without it)
    tokens = model.text_tokenizer.tokenize(["x x a photo of a forest"])
    start = model.text_tokenizer.prefix_length
    embeddings = model.token_embedding(tokens)
    pooled = model.pool_indices(tokens)
    with torch.no_grad():
        base = model.encode_text_embeddings(embeddings, pooled)
        for layer in range(model.transformer.layers):
            def deep_text(i, x, block, layer=layer):
                if i == layer:
                    noise = torch.randn(x[:, start:start + 2].shape, generator=torch.Generator().manual_seed(i))
                    x = torch.cat([x[:, :start], noise, x[:, start + 2:]], dim=1)
                return block(x)
            changed = model.encode_text_embeddings(embeddings, pooled, hook=deep_text)
            assert (changed - base).abs().max() > 1e-4, ("text", layer)


def test_open_clip_names_give_their_architectures():
    b16 = openclip.clip_arguments(*openclip.read_config("openclip:ViT-B-16"))
    assert (b16["embed_dim"], b16["vision_width"], b16["vision_heads"], b16["vision_layers"],
            b16["vision_patch_size"], b16["image_resolution"]) == (512, 768, 12, 12, 16, 224)
    assert (b16["transformer_width"], b16["transformer_heads"], b16["activation"]) == (512, 8, "gelu")
    assert openclip.clip_arguments(*openclip.read_config("ViT-B-16-quickgelu"))["activation"] == "quick_gelu"
    l14 = openclip.clip_arguments(*openclip.read_config("ViT-L-14"))
    assert (l14["embed_dim"], l14["vision_width"], l14["vision_heads"], l14["vision_layers"],
            l14["vision_patch_size"], l14["transformer_width"], l14["transformer_heads"]) == (
        768, 1024, 16, 24, 14, 768, 12)


@pytest.mark.parametrize("model, message", [
    ("EVA02-B-16", "vision_cfg.timm_pool=\"token\" is not supported with a timm tower"),
    ("nllb-clip-base-siglip", "text_cfg.hf_model_name=\"facebook/nllb-200-distilled-600M\" is a Hugging Face text tower"),
    ("ViT-L-14-CLIPA", "vision_cfg.no_ln_pre=true is not supported"),
    ("ViT-B-16-SigLP", "unknown open_clip model 'ViT-B-16-SigLP'; did you mean ViT-B-16-SigLIP"),
    ("RN50", "vision_cfg.layers=[3, 4, 6, 3] is a ResNet image tower"),
    ("coca_ViT-B-32", "vision_cfg.attentional_pool=true is not supported"),
])
def test_unsupported_models_are_one_line_errors(model, message):
    with pytest.raises(ValueError) as info:
        openclip.clip_arguments(*openclip.read_config(model))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unsupported_options_of_a_config_file_are_named(tmp_path):
    config = json.loads(json.dumps(FAMILIES["native-gelu"]))
    config["vision_cfg"]["ls_init_value"] = 1e-5
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"open_clip model ls: vision_cfg.ls_init_value=1e-05 is not supported"):
        clip.load(f"openclip:{path}", pretrained=str(path))
    config["vision_cfg"].pop("ls_init_value")
    config["text_cfg"]["rope"] = True
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"ls: text_cfg.rope=true is an option this package does not know"):
        clip.load(f"openclip:{path}", pretrained=str(path))
    with pytest.raises(FileNotFoundError, match="open_clip model config .*nothere.json does not exist"):
        clip.load("openclip:/nothere.json", pretrained=str(path))


def test_weights_that_do_not_fit_are_named(tmp_path):
    json_path, weights, _ = save_open_clip_model(tmp_path / "a", FAMILIES["native-gelu"])
    _, other, _ = save_open_clip_model(tmp_path / "b", FAMILIES["native-quickgelu"])
    with pytest.raises(RuntimeError, match=r"b/tiny.bin is not a checkpoint of open_clip model tiny: missing key "
                                           r"visual.transformer.resblocks.2.attn.in_proj_bias \(0 unexpected, 12"):
        clip.load(f"openclip:{json_path}", pretrained=other)
    _, wider, _ = save_open_clip_model(tmp_path / "c", dict(FAMILIES["native-gelu"], embed_dim=16))
    with pytest.raises(RuntimeError, match=r"c/tiny.bin is not a checkpoint of open_clip model tiny: text_projection "
                                           r"has shape \(64, 16\), the config gives \(64, 32\)"):
        clip.load(f"openclip:{json_path}", pretrained=wider)
    with pytest.raises(FileNotFoundError, match=r"open_clip weights file /no/such.bin does not exist"):
        clip.load(f"openclip:{json_path}", pretrained="/no/such.bin")
    with pytest.raises(ValueError, match=r"needs pretrained=<weights file>"):
        clip.load(f"openclip:{json_path}")
    with pytest.raises(ValueError, match=r"pretrained=, tag= and tokenizer= are for openclip:<model> names"):
        clip.load("mini-clip", pretrained=weights)
    truncated = tmp_path / "bad.bin"
    truncated.write_bytes(Path(weights).read_bytes()[:1000])
    with pytest.raises(RuntimeError, match=r"could not read open_clip weights from .*bad.bin"):
        clip.load(f"openclip:{json_path}", pretrained=str(truncated))


@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
def test_preprocessing_equals_open_clips(tmp_path, resize_mode):
    from open_clip.transform import image_transform

    config = dict(FAMILIES["native-gelu"], preprocess_cfg={"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
                                                           "resize_mode": resize_mode})
    json_path, weights, _ = save_open_clip_model(tmp_path, config)
    _, preprocess = clip.load(f"openclip:{json_path}", pretrained=weights)
    theirs = image_transform(32, is_train=False, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                             interpolation="bicubic", resize_mode=resize_mode)
    rng = np.random.default_rng(0)
    for shape in ((50, 41, 3), (32, 32, 3), (20, 90, 3)):
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        assert (preprocess(image) - theirs(image)).abs().max() < 1e-5, shape


def test_pretrained_tags_decide_preprocessing(tmp_path):
    # ViT-L-14's tags differ (OpenAI's mean/std, or 0.5 for some): the tag must be named
    with pytest.raises(ValueError, match=r"ViT-L-14: its pretrained tags use different preprocessing; name the tag "
                                         r"of your weights with MODEL.BACKBONE.TAG \(one of .*laion2b_s32b_b82k"):
        openclip.preprocess_config("openclip:ViT-L-14")
    laion = openclip.preprocess_config("openclip:ViT-L-14", "laion2b_s32b_b82k")
    assert laion["size"] == 224 and laion["resize_mode"] == "shortest"
    b16 = openclip.preprocess_config("openclip:ViT-B-16")
    assert b16["mean"] == openclip.OPENAI_PREPROCESS["mean"] and b16["interpolation"] == "bicubic"
    with pytest.raises(ValueError, match="open_clip model ViT-B-16 has no pretrained tag 'webli'"):
        openclip.preprocess_config("openclip:ViT-B-16", "webli")
    # a tag trained with QuickGELU under the GELU config (open_clip only warns) is refused, before any weights
    with pytest.raises(ValueError, match="open_clip tag dfn2b was trained with QuickGELU but model ViT-B-16 uses "
                                         "GELU: use openclip:ViT-B-16-quickgelu"):
        openclip.build_openclip("openclip:ViT-B-16", "/not/read.bin", "dfn2b")
    with pytest.raises(ValueError, match="model ViT-B-16-quickgelu has no pretrained tag 'laion2b_s34b_b88k'; its "
                                         "tags: openai, dfn2b"):
        openclip.build_openclip("openclip:ViT-B-16-quickgelu", "/not/read.bin", "laion2b_s34b_b88k")
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(FAMILIES["native-gelu"]))
    with pytest.raises(ValueError, match="TAG webli names an open_clip pretrained tag, but .*mine.json is a config"):
        openclip.preprocess_config(f"openclip:{mine}", "webli")


def test_input_settings_come_from_the_backbone_unless_chosen(tmp_path):
    from dassl.config import get_cfg_default
    from trainers.base import apply_backbone_preprocessing

    config = dict(FAMILIES["native-gelu"], preprocess_cfg={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    json_path, weights, _ = save_open_clip_model(tmp_path, config)
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs/smoke/tiny_clip.yaml"))  # writes OpenAI's mean/std, as all configs do
    cfg.MODEL.BACKBONE.NAME = f"openclip:{json_path}"
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.PIXEL_STD = [0.3, 0.3, 0.3]  # chosen for this run: kept
    changes = apply_backbone_preprocessing(cfg)
    assert tuple(cfg.INPUT.SIZE) == (32, 32) and list(cfg.INPUT.PIXEL_MEAN) == [0.5, 0.5, 0.5]
    assert list(cfg.INPUT.PIXEL_STD) == [0.3, 0.3, 0.3] and cfg.INPUT.INTERPOLATION == "bicubic"
    assert set(changes) == {"SIZE", "PIXEL_MEAN"}
    cfg.MODEL.BACKBONE.NAME = "ViT-B/16"
    assert apply_backbone_preprocessing(cfg) == {}
    # SigLIP's tag: mean/std 0.5 and squashed (not cropped) test images, as open_clip preprocesses them
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs/smoke/tiny_clip.yaml"))
    cfg.MODEL.BACKBONE.NAME = "openclip:ViT-B-16-SigLIP"
    apply_backbone_preprocessing(cfg)
    assert (tuple(cfg.INPUT.SIZE), list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD), cfg.INPUT.RESIZE_MODE) == (
        (32, 32), [0.5] * 3, [0.5] * 3, "squash")  # the smoke config's 32 px was chosen: kept


def test_squashed_test_transform_equals_open_clips():
    from open_clip.transform import image_transform

    from dassl.config import get_cfg_default
    from dassl.data.transforms import build_transform

    cfg = get_cfg_default()
    cfg.INPUT.SIZE, cfg.INPUT.INTERPOLATION, cfg.INPUT.RESIZE_MODE = (32, 32), "bicubic", "squash"
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD, cfg.INPUT.TRANSFORMS = [0.5] * 3, [0.5] * 3, ("normalize",)
    ours = build_transform(cfg, is_train=False)
    theirs = image_transform(32, is_train=False, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic",
                             resize_mode="squash")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8))
    assert (ours(image) - theirs(image)).abs().max() < 1e-5
    cfg.INPUT.RESIZE_MODE = "longest"
    with pytest.raises(ValueError, match="INPUT.RESIZE_MODE 'longest' is not one of 'shortest', 'squash'"):
        build_transform(cfg, is_train=False)


# ------------------------------------------------------------------------------ every method, end to end
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")
SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
METHODS = {
    "ZeroshotCLIP": [], "CoOp": ["TRAINER.COOP.N_CTX", 4], "CoCoOp": ["TRAINER.COCOOP.N_CTX", 4],
    "VPT": ["TRAINER.VPT.N_CTX_VISION", 4, "TRAINER.VPT.PROMPT_DEPTH_VISION", 6],
    "IVLP": ["TRAINER.IVLP.PROMPT_DEPTH_VISION", 9, "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 9],
    "MaPLe": ["TRAINER.MAPLE.PROMPT_DEPTH", 9], "BMIP": [], "Bloom": [],
    "PromptSRC_Bloom": [], "CoPrompt_BMIP": ["DATALOADER.K_TRANSFORMS", 2], "LinearProbeCLIP": [],
}


@pytest.fixture(scope="module")
def tiny_openclip(tmp_path_factory, tiny_siglip, hf_tokenizer):
    """``{family: (backbone, weights, tokenizer folder)}`` for the native and the SigLIP family."""
    json_path, weights, _ = save_open_clip_model(tmp_path_factory.mktemp("openclip"), TINY_NATIVE,
                                                 fmt="safetensors", name="tiny-native")
    return {"native": (f"openclip:{json_path}", weights, ""),
            "siglip": (f"openclip:{tiny_siglip[0]}", tiny_siglip[1], hf_tokenizer)}


def method_args(name, backbone, root, out, descriptions, flags=()):
    from dassl.engine import TRAINER_REGISTRY
    import trainers  # noqa: F401  (registration)

    model, weights, tokenizer = backbone
    args = [*flags, "--root", root, "--seed", 1, "--trainer", name, "--dataset-config-file", EUROSAT_CFG,
            "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", model,
            "MODEL.BACKBONE.WEIGHTS", weights, "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "base",
            "OPTIM.MAX_EPOCH", 1, *METHODS[name]]
    if tokenizer:
        args += ["MODEL.BACKBONE.TOKENIZER", tokenizer]
    node = getattr(TRAINER_REGISTRY.get(name), "CFG_NODE", None)
    if node and name not in ("ZeroshotCLIP", "LinearProbeCLIP"):
        args += [f"TRAINER.{node}.PREC", "fp32"]
    if name.startswith("CoPrompt"):
        args += ["TRAINER.CoPrompt.DESCRIPTIONS", descriptions]
    return args


@pytest.fixture(scope="module")
def descriptions(tmp_path_factory):
    from test_regularizers import EUROSAT_CLASSES

    path = tmp_path_factory.mktemp("gpt") / "eurosat_prompt.json"
    path.write_text(json.dumps({c: [f"a satellite photo of {c}.", f"{c} from above."] for c in EUROSAT_CLASSES}))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["native", "siglip"])
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_and_tests_on_each_open_clip_family(tmp_path, eurosat_root, tiny_openclip, descriptions,
                                                                name, family):
    backbone = tiny_openclip[family]
    out = tmp_path / "run"
    proc = run_train(*method_args(name, backbone, eurosat_root, out, descriptions))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert 0 <= result["metrics"]["accuracy"] <= 100 and result["num_classes"] == 5
    log = (out / "log.txt").read_text()
    assert f"Loading CLIP (backbone: {backbone[0]})" in log
    if name != "Bloom":  # checkpoint loading does not depend on the backbone: once per family is enough here
        return
    # the checkpoint evaluates to the same accuracy
    proc = run_train(*method_args(name, backbone, eurosat_root, tmp_path / "eval", descriptions,
                                  flags=("--eval-only", "--model-dir", out, "--load-epoch", 1)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert again["metrics"]["accuracy"] == result["metrics"]["accuracy"]
    # the analysis tools read the run as they read any other: backbone, weights, tokenizer from its config
    from tools.interpret_prompt import interpret
    from test_gradcam import eurosat_images, gc

    reading = interpret(str(out), topk=2)
    assert reading["trainer"] == "Bloom" and reading["prompts"]
    if family == "siglip":  # SigLIP's vocabulary: the nearest entries are words of the tiny tokenizer
        vocabulary = set(json.loads((Path(backbone[2]) / "tokenizer.json").read_text())["model"]["vocab"])
        assert all(n["token"] in vocabulary for p in reading["prompts"] for t in p["tokens"] for n in t["nearest"])
    png = tmp_path / "cam.png"
    extra = ["MODEL.BACKBONE.TOKENIZER", backbone[2]] if backbone[2] else []
    code = gc.main(["--root", eurosat_root, "--dataset-config-file", EUROSAT_CFG, "--config-file", SMOKE_CFG,
                    "--backbone", backbone[0], "--device", "cpu", "--seed", "1", "--trainer", "Bloom",
                    "--run", f"bloom:Bloom::{out}:1", "--image", eurosat_images(eurosat_root, 1)[0],
                    "--out", str(png), "MODEL.BACKBONE.WEIGHTS", backbone[1], "DATASET.SUBSAMPLE_CLASSES", "base",
                    "TRAINER.BLOOM.PREC", "fp32", *extra])
    assert code == 0 and png.stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("family", ["native", "siglip"])
def test_a_killed_run_on_an_open_clip_model_resumes_exactly(tmp_path, eurosat_root, tiny_openclip, descriptions,
                                                            family):
    args = method_args("BMIP", tiny_openclip[family], eurosat_root, str(tmp_path / "ref"), descriptions)
    args[args.index("OPTIM.MAX_EPOCH") + 1] = 2
    if family == "siglip":  # BMIP's attention read-out on a bidirectional text tower
        args += ["TRAINER.BMIP.TEXT_WEIGHT", "received"]
    assert run_train(*args).returncode == 0
    killed = [str(tmp_path / "run") if a == str(tmp_path / "ref") else a for a in args]
    proc = run_train(*killed, env={"PROMPTCLIP_FAULT": "train_batch:2:kill"})
    assert proc.returncode != 0 and "fault injection: kill at train_batch #2" in proc.stderr
    proc = run_train(*killed)
    assert proc.returncode == 0 and "will resume training" in proc.stdout, proc.stdout[-2000:]
    ref = json.loads((tmp_path / "ref" / "results.json").read_text())["metrics"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["metrics"] == ref


def test_a_missing_weights_setting_is_a_one_line_error(tmp_path, eurosat_root, tiny_openclip, descriptions):
    model, _, _ = tiny_openclip["native"]
    args = method_args("CoOp", (model, "", ""), eurosat_root, tmp_path / "run", descriptions)
    proc = run_train(*args)
    assert proc.returncode != 0
    assert "MODEL.BACKBONE.NAME openclip:" in proc.stderr and "needs MODEL.BACKBONE.WEIGHTS <file>" in proc.stderr


def test_vit_l14_sizes_every_coupling_layer_from_the_model():
    """MaPLe, BMIP and Bloom at ViT-L/14 (vision 1024 x 24, text 768, joint 768), from open_clip's config:
    no hand edit of coupling sizes (MaPLe repository issue 73). The frozen towers are never read to size
    a learner, so they stay on the meta device; only the token embedding (read by the initialisation)
    is real."""
    from clip.model import CLIP
    from tests.helpers.methods import CLASSNAMES, make_cfg, n_params
    from trainers.bloom import BloomPromptLearner
    from trainers.bmip import BMIPPromptLearner
    from trainers.maple import MultiModalPromptLearner

    with torch.device("meta"):
        model = CLIP(**openclip.clip_arguments(*openclip.read_config("ViT-L-14")))
    model.token_embedding = torch.nn.Embedding(49408, 768, _weight=torch.zeros(49408, 768))
    maple = MultiModalPromptLearner(make_cfg(), CLASSNAMES, model)
    assert maple.proj.weight.shape == (1024, 768)
    # context 2 x 768, 9 couplings Linear(768 -> 1024), 8 deeper text prompts 2 x 768
    assert n_params(maple) == 2 * 768 + 9 * (768 * 1024 + 1024) + 8 * 2 * 768 == 7_100_928
    assert n_params(BMIPPromptLearner(make_cfg(share=True), CLASSNAMES, model)) == 2_392_343
    assert n_params(BloomPromptLearner(make_cfg(), CLASSNAMES, model)) == 2_818_608


@pytest.mark.parametrize("family", ["native", "siglip"])
def test_bmip_inference_shares_one_attention_pass_on_every_family(tmp_path, tiny_siglip, hf_tokenizer, monkeypatch,
                                                                   family):
    """BMIP's inference path (read-out and block from one attention pass) equals its two-pass path with
    and without a class token (SigLIP's patches are all non-prompt queries)."""
    import trainers.bmip as bmip_module
    from tests.helpers.methods import CLASSNAMES, make_cfg
    from trainers.base import PromptedCLIP

    model = load_family(family, tmp_path, tiny_siglip, hf_tokenizer)
    torch.manual_seed(3)
    depth = min(model.visual.transformer.layers, model.transformer.layers)
    cfg = make_cfg(share=True, BMIP={"PROMPT_DEPTH": depth, "VISION_WEIGHT": "per_sample"})
    learner = bmip_module.BMIPPromptLearner(cfg, CLASSNAMES, model)
    with torch.no_grad():
        for p in learner.compound_prompts_visual:
            p.add_(torch.randn_like(p))
        learner.vision_gates.weight.mul_(30)
    prompted = PromptedCLIP(model, learner)
    size = model.visual.input_resolution
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    calls = []
    real = bmip_module.attention_with_lse
    def counted(*a):
        result = real(*a)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(bmip_module, "attention_with_lse", counted)
    with torch.no_grad():
        one_pass = prompted(images)
    assert calls == [True] * (depth - 1)  # the one-pass path ran in every deep vision layer
    monkeypatch.setattr(bmip_module, "attention_with_lse", lambda *a: None)
    with torch.no_grad():
        two_pass = prompted(images)
    torch.testing.assert_close(one_pass, two_pass, rtol=1e-5, atol=1e-5)
