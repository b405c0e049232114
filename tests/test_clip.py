"""Tests for the patched CLIP package: architecture inference, numerical agreement with open_clip,
hooks and prompts, gradient checkpointing, the loader (files, downloads, errors), the tokenizer."""
import hashlib
import os
import urllib.error
import urllib.request

import pytest
import torch
from PIL import Image

import clip
from clip.model import CLIP, build_model, infer_clip_config
from tests.helpers.tiny_clip import (make_tiny_clip_state_dict, save_tiny_clip,
                                     save_tiny_clip_jit, to_openai_precision)

TEXTS = ["a photo of a cat.", "A PHOTO of a Dog!!", "naïve café — déjà vu 東京",
         "Hello,World? it's 3.14 o'clock", "x"]


def _fp16_representable(state_dict):
    # open_clip's reference builder casts weights to fp16 before loading; values that are
    # already fp16-exact make that cast lossless, so both models hold identical numbers.
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state_dict.items()}


@pytest.fixture(scope="module")
def vit_state_dict():
    return make_tiny_clip_state_dict("vit", seed=0)


@pytest.fixture(scope="module")
def vit_model(vit_state_dict):
    return build_model(vit_state_dict)


@pytest.fixture(scope="module")
def rn_state_dict():
    return make_tiny_clip_state_dict("rn", seed=0)


@pytest.fixture(scope="module")
def tokens():
    return clip.tokenize(TEXTS)


def _images(model, n=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, model.image_resolution, model.image_resolution, generator=generator)


# ----------------------------------------------------------------------------- architecture

@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_state_dict_round_trip(kind, vit_state_dict, rn_state_dict):
    state_dict = vit_state_dict if kind == "vit" else rn_state_dict
    model = build_model(state_dict)
    rebuilt = model.state_dict()
    assert list(rebuilt) == list(state_dict)
    assert all(torch.equal(rebuilt[k], state_dict[k]) for k in state_dict)
    assert not model.training


def test_tiny_vit_attributes(vit_model):
    assert vit_model.is_vit
    assert (vit_model.vision_width, vit_model.text_width, vit_model.embed_dim) == (128, 64, 32)
    assert vit_model.image_resolution == 32 and vit_model.context_length == 77
    assert len(vit_model.visual.transformer.resblocks) == 12
    assert len(vit_model.transformer.resblocks) == 12
    assert vit_model.visual.transformer.resblocks[0].n_head == 2
    assert vit_model.transformer.resblocks[0].n_head == 1
    assert vit_model.visual.num_patches == 16


def test_tiny_state_dict_is_deterministic_and_seeded():
    first = make_tiny_clip_state_dict("vit", seed=3, text_layers=1, vision_layers=1)
    again = make_tiny_clip_state_dict("vit", seed=3, text_layers=1, vision_layers=1)
    other = make_tiny_clip_state_dict("vit", seed=4, text_layers=1, vision_layers=1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["visual.proj"], other["visual.proj"])
    assert first["logit_scale"].item() == pytest.approx(torch.log(torch.tensor(1 / 0.07)).item())


OPENAI_ARCHITECTURES = {
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3),
                 vision_width=64, vision_patch_size=None, transformer_width=512,
                 transformer_heads=8, transformer_layers=12),
    "RN50x64": dict(embed_dim=1024, image_resolution=448, vision_layers=(3, 15, 36, 10),
                    vision_width=128, vision_patch_size=None, transformer_width=1024,
                    transformer_heads=16, transformer_layers=12),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, transformer_width=512, transformer_heads=8,
                     transformer_layers=12),
    "ViT-L/14@336px": dict(embed_dim=768, image_resolution=336, vision_layers=24,
                           vision_width=1024, vision_patch_size=14, transformer_width=768,
                           transformer_heads=12, transformer_layers=12),
}


@pytest.mark.parametrize("name", sorted(OPENAI_ARCHITECTURES))
def test_infer_config_of_openai_architectures(name):
    expected = dict(OPENAI_ARCHITECTURES[name], context_length=77, vocab_size=49408)
    with torch.device("meta"):  # shapes only, no memory
        state_dict = CLIP(**expected).state_dict()
    assert infer_clip_config(state_dict) == expected


def test_build_model_accepts_wrapped_and_fp16_and_rejects_foreign(vit_state_dict):
    half = to_openai_precision(vit_state_dict)
    assert half["visual.conv1.weight"].dtype == torch.float16
    for wrapped in ({"state_dict": half}, {"model": half}):
        model = build_model(wrapped)
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert torch.equal(model.visual.conv1.weight, half["visual.conv1.weight"].float())
    with_extras = dict(half, input_resolution=torch.tensor(32), context_length=torch.tensor(77),
                       vocab_size=torch.tensor(49408))
    build_model(with_extras)
    assert "input_resolution" in with_extras  # the caller's dict is left alone
    broken = {k: v for k, v in vit_state_dict.items() if k != "text_projection"}
    with pytest.raises(ValueError, match="text_projection"):
        build_model(broken)


# ----------------------------------------------------------------------------- numerics

def _open_clip_reference(state_dict):
    open_clip_model = pytest.importorskip("open_clip.model")
    return open_clip_model.build_model_from_openai_state_dict(dict(state_dict)).float().eval()


@pytest.mark.parametrize("kind,text_width", [("vit", 128), ("rn", 64)])
def test_features_match_open_clip(kind, text_width, tokens):
    state_dict = _fp16_representable(make_tiny_clip_state_dict(kind, seed=5, text_width=text_width))
    model = build_model(state_dict)
    reference = _open_clip_reference(state_dict)
    images = _images(model)
    with torch.no_grad():
        ours_image, ref_image = model.encode_image(images), reference.encode_image(images)
        ours_text, ref_text = model.encode_text(tokens), reference.encode_text(tokens)
    assert ours_image.shape == (3, 32) and ours_text.shape == (len(TEXTS), 32)
    assert ours_image.abs().mean() > 1e-2 and ours_text.abs().mean() > 1e-2
    torch.testing.assert_close(ours_image, ref_image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours_text, ref_text, rtol=1e-4, atol=1e-5)


def test_forward_logits(vit_model, tokens):
    images = _images(vit_model)
    with torch.no_grad():
        logits_per_image, logits_per_text = vit_model(images, tokens)
        image_features = vit_model.encode_image(images)
        text_features = vit_model.encode_text(tokens)
    cosine = torch.nn.functional.cosine_similarity(
        image_features[:, None], text_features[None], dim=-1)
    torch.testing.assert_close(logits_per_image, cosine / 0.07, rtol=1e-4, atol=1e-4)
    assert torch.equal(logits_per_text, logits_per_image.t())


def test_text_positions_after_eot_do_not_matter(vit_model, tokens):
    """The text transformer is causal: changing tokens after EOT leaves the features unchanged."""
    altered = tokens.clone()
    altered[:, -5:] = 1234
    with torch.no_grad():
        torch.testing.assert_close(vit_model.encode_text(altered), vit_model.encode_text(tokens))


# ----------------------------------------------------------------------------- hooks and prompts

def test_identity_hook_matches_and_sees_every_layer(vit_model, tokens):
    seen = {"vision": [], "text": []}

    def recording_hook(stream):
        def hook(i, x, block):
            seen[stream].append(i)
            return block(x)
        return hook

    images = _images(vit_model)
    with torch.no_grad():
        image_plain = vit_model.encode_image(images)
        image_hooked = vit_model.encode_image(images, hook=recording_hook("vision"))
        text_plain = vit_model.encode_text(tokens)
        text_hooked = vit_model.encode_text(tokens, hook=recording_hook("text"))
    assert torch.equal(image_plain, image_hooked)
    assert torch.equal(text_plain, text_hooked)
    assert seen == {"vision": list(range(12)), "text": list(range(12))}


def test_hook_can_change_the_output(vit_model):
    images = _images(vit_model)

    def zero_layer_five(i, x, block):
        return block(torch.zeros_like(x) if i == 5 else x)

    with torch.no_grad():
        assert not torch.allclose(vit_model.encode_image(images),
                                  vit_model.encode_image(images, hook=zero_layer_five))


def test_vision_prompts_are_appended(vit_model):
    images = _images(vit_model, n=2)
    shapes = []

    def shape_hook(i, x, block):
        shapes.append(tuple(x.shape))
        return block(x)

    prompts = 0.1 * torch.randn(4, vit_model.vision_width, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = vit_model.encode_image(images)
        shared = vit_model.encode_image(images, prompts=prompts, hook=shape_hook)
        per_image = vit_model.encode_image(images, prompts=prompts.expand(2, -1, -1))
    assert shapes == [(2, 1 + 16 + 4, 128)] * 12
    assert (shared - plain).abs().max() > 1e-4
    torch.testing.assert_close(per_image, shared)
    with pytest.raises(ValueError, match="vision prompts"):
        vit_model.encode_image(images, prompts=torch.zeros(4, 64))


def test_vision_prompts_keep_the_patch_tokens_in_place(vit_model):
    """Prompts are appended after [CLS, patches]: the first 17 tokens entering layer 0 equal the
    prompt-free ones (CLS and patch positions and their embeddings are untouched)."""
    images = _images(vit_model, n=2)
    first_inputs = []

    def capture(i, x, block):
        if i == 0:
            first_inputs.append(x)
        return block(x)

    with torch.no_grad():
        vit_model.encode_image(images, hook=capture)
        vit_model.encode_image(images, prompts=torch.ones(3, 128), hook=capture)
    torch.testing.assert_close(first_inputs[1][:, :17], first_inputs[0])


def test_text_embeddings_entry_matches_encode_text(vit_model, tokens):
    with torch.no_grad():
        direct = vit_model.encode_text(tokens)
        via_embeddings = vit_model.encode_text_embeddings(
            vit_model.token_embedding(tokens), tokens.argmax(-1))
        short = vit_model.encode_text_embeddings(
            vit_model.token_embedding(tokens[:, :20]), tokens.argmax(-1))
    assert torch.equal(direct, via_embeddings)
    # Causality makes a sequence cut after EOT give the same features.
    torch.testing.assert_close(short, direct, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="context length"):
        vit_model.encode_text_embeddings(torch.zeros(1, 78, 64), torch.tensor([3]))


def test_block_pieces_and_attention_probs(vit_model):
    torch.manual_seed(0)
    for block, causal in ((vit_model.visual.transformer.resblocks[3], False),
                          (vit_model.transformer.resblocks[3], True)):
        x = torch.randn(2, 9, block.d_model)
        with torch.no_grad():
            q, k, v = block.qkv(x)
            assert q.shape == (2, block.n_head, 9, block.head_dim)
            assert torch.equal(block.finish(x, q, k, v), block(x))
            probs = block.attention_probs(q, k)
            torch.testing.assert_close(probs.sum(-1), torch.ones(2, block.n_head, 9))
            if causal:
                assert probs.triu(1).abs().max() == 0
            # The probabilities reproduce the fused attention used by finish().
            manual = (probs @ v).transpose(1, 2).reshape(2, 9, block.d_model)
            expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
            torch.testing.assert_close(manual, expected.transpose(1, 2).reshape(2, 9, -1),
                                       rtol=1e-5, atol=1e-6)


def test_resnet_rejects_prompts_and_hooks(rn_state_dict):
    model = build_model(rn_state_dict)
    images = _images(model, n=1)
    assert not model.is_vit and model.image_resolution == 64
    with pytest.raises(ValueError, match="requires a ViT backbone"):
        model.encode_image(images, prompts=torch.zeros(2, 8))
    with pytest.raises(ValueError, match="requires a ViT backbone"):
        model.encode_image(images, hook=lambda i, x, block: block(x))


def test_wrong_image_size_names_resolutions(vit_model):
    with pytest.raises(ValueError, match="expected resolution 32x32, got 64x48"):
        vit_model.encode_image(torch.zeros(1, 3, 64, 48))


# ----------------------------------------------------------------------------- checkpointing

@pytest.mark.parametrize("use_hook", [False, True])
def test_grad_checkpointing_same_outputs_and_gradients(vit_state_dict, use_hook):
    def run(checkpointing):
        model = build_model(vit_state_dict).train()
        model.set_grad_checkpointing(checkpointing)
        prompts = torch.full((2, 128), 0.05, requires_grad=True)
        # A tensor the hook captures from its closure, as a deep-prompt hook would.
        shift = torch.full((128,), 0.01, requires_grad=True)
        calls = []

        def hook(i, x, block):
            calls.append(i)
            return block(x + shift)

        features = model.encode_image(_images(model, n=2), prompts=prompts,
                                      hook=hook if use_hook else None)
        features.square().sum().backward()
        grads = [prompts.grad, model.visual.transformer.resblocks[0].attn.in_proj_weight.grad]
        if use_hook:
            grads.append(shift.grad)
        return [features.detach()] + grads, len(calls)

    (plain, plain_calls), (checkpointed, checkpointed_calls) = run(False), run(True)
    for reference, value in zip(plain, checkpointed):
        assert reference.abs().max() > 0
        torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-6)
    if use_hook:
        # Checkpointing recomputes each hooked block call during backward.
        assert (plain_calls, checkpointed_calls) == (12, 24)


# ----------------------------------------------------------------------------- loader

def test_available_models_and_urls():
    names = clip.available_models()
    assert names == ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16",
                     "ViT-L/14", "ViT-L/14@336px", "mini-clip"]  # the last is bundled, never downloaded
    for url in clip.MODEL_URLS.values():
        assert url.startswith("https://openaipublic.azureedge.net/clip/models/")
        assert len(url.split("/")[-2]) == 64


@pytest.mark.parametrize("saver", [save_tiny_clip, save_tiny_clip_jit])
def test_load_local_file(tmp_path, saver, vit_state_dict):
    path = saver(str(tmp_path / "tiny.pt"))
    model, preprocess = clip.load(path)
    expected = to_openai_precision(vit_state_dict)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert set(model.state_dict()) == set(vit_state_dict)
    assert torch.equal(model.text_projection, expected["text_projection"].float())
    image = Image.new("L", (50, 40), color=128)  # grayscale, non-square
    pixels = preprocess(image)
    assert pixels.shape == (3, 32, 32)
    expected_value = (128 / 255 - torch.tensor(clip.CLIP_MEAN)) / torch.tensor(clip.CLIP_STD)
    torch.testing.assert_close(pixels[:, 16, 16], expected_value, rtol=1e-4, atol=1e-4)


def test_load_unknown_name_lists_models(tmp_path):
    with pytest.raises(RuntimeError, match="ViT-B/16"):
        clip.load("ViT-B/17")
    with pytest.raises(RuntimeError, match="available models"):
        clip.load(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="jit=False"):
        clip.load("RN50", jit=True)


def test_load_unreadable_file_names_it(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="garbage.pt"):
        clip.load(str(path))


def _served_file(tmp_path, payload=b"fake clip weights " * 1000):
    source = tmp_path / "served" / "model.pt"
    source.parent.mkdir()
    source.write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    return source, sha


def test_download_file_url_checks_sha_and_leaves_no_temp(tmp_path):
    source, sha = _served_file(tmp_path)
    cache = tmp_path / "cache"
    url = source.as_uri()
    path = clip.download(url, str(cache), expected_sha256=sha)
    assert path == str(cache / "model.pt")
    assert open(path, "rb").read() == source.read_bytes()
    assert os.listdir(cache) == ["model.pt"]
    # Cached and valid: no second download.
    calls = []
    assert clip.download(url, str(cache), expected_sha256=sha,
                         urlopen=lambda u: calls.append(u)) == path
    assert calls == []


def test_download_sha_from_url_path(tmp_path):
    """OpenAI's convention: the SHA256 is the second-to-last URL path component."""
    source, sha = _served_file(tmp_path)
    hashed_dir = tmp_path / sha
    hashed_dir.mkdir()
    (hashed_dir / "model.pt").write_bytes(source.read_bytes())
    path = clip.download((hashed_dir / "model.pt").as_uri(), str(tmp_path / "cache"))
    assert os.path.basename(path) == "model.pt"


def test_download_wrong_sha_raises_and_keeps_nothing(tmp_path):
    source, _ = _served_file(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="SHA256 mismatch"):
        clip.download(source.as_uri(), str(cache), expected_sha256="0" * 64)
    assert os.listdir(cache) == []


def test_cached_file_with_bad_sha_is_downloaded_again(tmp_path):
    source, sha = _served_file(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.pt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="SHA256 does not match"):
        path = clip.download(source.as_uri(), str(cache), expected_sha256=sha)
    assert open(path, "rb").read() == source.read_bytes()


def test_offline_error_names_url_and_target(tmp_path, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "env_cache"))
    url = clip.MODEL_URLS["ViT-B/16"]
    with pytest.raises(RuntimeError) as error:
        clip.load("ViT-B/16")
    message = str(error.value)
    assert url in message
    assert str(tmp_path / "env_cache" / "ViT-B-16.pt") in message
    assert "\n" not in message
    assert os.listdir(tmp_path / "env_cache") == []


# ----------------------------------------------------------------------------- tokenizer

def test_tokenize_matches_open_clip(tokens):
    open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer")
    torch.testing.assert_close(tokens, open_clip_tokenizer.tokenize(TEXTS), rtol=0, atol=0)
    assert tokens.shape == (len(TEXTS), 77) and tokens.dtype == torch.long
    # start token, "a photo of a cat ." , end token, zeros
    assert tokens[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    assert tokens[0, 8:].abs().sum() == 0


def test_tokenize_length_limits():
    long_text = "cat " * 80
    with pytest.raises(RuntimeError, match="too long for context length 77"):
        clip.tokenize(["ok", long_text])
    truncated = clip.tokenize(long_text, truncate=True)
    assert truncated.shape == (1, 77)
    assert truncated[0, 0] == 49406 and truncated[0, -1] == 49407
    assert truncated.argmax(-1).item() == 76


def test_simple_tokenizer_compat_module():
    from clip.simple_tokenizer import SimpleTokenizer as _Tokenizer

    tokenizer = _Tokenizer()
    ids = tokenizer.encode("Golden Retriever")
    assert len(ids) == 2
    assert tokenizer.decode(ids).strip() == "golden retriever"
    assert tokenizer.encoder["cat</w>"] == 2368


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_with_lse_returns_the_attention_and_its_normaliser(dtype):
    from clip.model import attention_with_lse

    g = torch.Generator().manual_seed(0)
    qkv = (torch.randn(2, 5, 3, 4, 16, generator=g) * 3).to(dtype)  # (N, L, 3, H, Dh) as project() lays it out
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # strided views, like split_heads'
    out, lse = attention_with_lse(q, k, v)
    assert out.dtype == dtype and lse.dtype == torch.float32 and lse.shape == (2, 4, 5)
    scores = (q.float() @ k.float().transpose(-2, -1)) / 4.0
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1), rtol=tol, atol=tol)
    torch.testing.assert_close(out.float(), scores.softmax(-1) @ v.float(), rtol=tol, atol=tol)
