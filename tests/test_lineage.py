"""CoCoOp, VPT, deep language prompting, IVLP and MaPLe on the tiny CLIP:
what trains, where prompts sit in each layer, batching, caching, parameter counts."""
import math

import pytest
import torch
import torch.nn.functional as F

import clip
from tests.helpers.methods import CLASSNAMES, images, make_cfg, n_params, record
from tests.helpers.tiny_clip import make_tiny_clip_state_dict
from trainers.base import PromptedCLIP, encode_class_texts
from trainers.cocoop import CoCoOpPromptLearner, InstanceConditionedCLIP
from trainers.ivlp import IndependentVLPromptLearner, VisionPromptLearner, map_official_ivlp_keys
from trainers.maple import MultiModalPromptLearner
from trainers.prompting import DeepPromptHook, require_vit

METHODS = {
    "CoCoOp": lambda m: InstanceConditionedCLIP(
        m, CoCoOpPromptLearner(make_cfg(COCOOP={"N_CTX": 4}), CLASSNAMES, m), 2048),
    "VPT": lambda m: PromptedCLIP(
        m, VisionPromptLearner(make_cfg(VPT={"N_CTX_VISION": 4, "PROMPT_DEPTH_VISION": 12}), CLASSNAMES, m)),
    "LanguagePrompting": lambda m: PromptedCLIP(m, IndependentVLPromptLearner(make_cfg(IVLP={
        "N_CTX_TEXT": 4, "N_CTX_VISION": 0, "PROMPT_DEPTH_VISION": 0, "PROMPT_DEPTH_TEXT": 12}), CLASSNAMES, m)),
    "IVLP": lambda m: PromptedCLIP(m, IndependentVLPromptLearner(make_cfg(IVLP={
        "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9}), CLASSNAMES, m)),
    "MaPLe": lambda m: PromptedCLIP(m, MultiModalPromptLearner(make_cfg(MAPLE={"PROMPT_DEPTH": 9}), CLASSNAMES, m)),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_only_prompt_learner_trains_and_fixed_batch_is_fitted(clip_model, method):
    torch.manual_seed(0)
    model = METHODS[method](clip_model)
    clip_before = {k: v.clone() for k, v in clip_model.state_dict().items()}
    learner_before = {k: v.clone() for k, v in model.prompt_learner.state_dict().items()}
    x, y = images(5, seed=1), torch.arange(5)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if not losses:  # every trainable tensor receives a gradient
            for name, p in model.prompt_learner.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses[::8]
    with torch.no_grad():
        assert torch.equal(model(x).argmax(-1), y)
    for k, v in clip_model.state_dict().items():
        assert torch.equal(v, clip_before[k]), f"frozen CLIP weight {k} changed"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_learner.") for n in trainable)
    changed = [k for k, v in model.prompt_learner.state_dict().items() if not torch.equal(v, learner_before[k])]
    assert changed


def test_zero_prompts_of_depth_one_sit_where_expected(clip_model):
    """Depth 1 with zero-initialised layer-0 prompts: hand-computed token values."""
    cfg = make_cfg(IVLP={"N_CTX_TEXT": 2, "N_CTX_VISION": 3, "PROMPT_DEPTH_TEXT": 1, "PROMPT_DEPTH_VISION": 1,
                         "CTX_INIT": ""})
    pl = IndependentVLPromptLearner(cfg, CLASSNAMES, clip_model)
    with torch.no_grad():
        pl.ctx.zero_()
        pl.vision.vision_ctx.zero_()
    ps = pl()
    assert len(pl.deep_text_prompts) == 0 and len(pl.vision.deep_vision_prompts) == 0
    vlog, tlog = {}, {}
    clip_model.encode_image(images(2, 0), prompts=ps.vision_prompts, hook=record(ps.vision_hook, vlog))
    n_patches = (32 // 8) ** 2
    x0 = vlog[0][0]
    assert x0.shape[1] == 1 + n_patches + 3
    # appended after [CLS, patches], then only ln_pre: zero tokens become ln_pre's bias
    torch.testing.assert_close(x0[:, -3:], clip_model.visual.ln_pre.bias.expand(2, 3, -1))
    # text: [SOS][ctx x2][class tokens]...: the zero context only carries its positional embedding
    clip_model.encode_text_embeddings(ps.text_embeddings, ps.eot_indices, hook=record(ps.text_hook, tlog))
    t0 = tlog[0][0]
    torch.testing.assert_close(t0[:, 1:3], clip_model.positional_embedding[1:3].expand(len(CLASSNAMES), -1, -1))
    sos = clip_model.token_embedding.weight[49406] + clip_model.positional_embedding[0]
    torch.testing.assert_close(t0[:, 0], sos.expand(len(CLASSNAMES), -1))
    # after layer 0 nothing is replaced: each block receives the previous block's output
    for log in (vlog, tlog):
        for i in range(1, 12):
            assert torch.equal(log[i][0], log[i - 1][1])


@pytest.mark.parametrize("depth", [3, 9, 12])
def test_deep_prompts_replace_until_depth_then_carry_outputs(clip_model, depth):
    torch.manual_seed(2)
    pl = MultiModalPromptLearner(make_cfg(MAPLE={"PROMPT_DEPTH": depth}), CLASSNAMES, clip_model)
    ps = pl()
    vlog, tlog = {}, {}
    with torch.no_grad():
        clip_model.encode_image(images(2, 3), prompts=ps.vision_prompts, hook=record(ps.vision_hook, vlog))
        clip_model.encode_text_embeddings(ps.text_embeddings, ps.eot_indices, hook=record(ps.text_hook, tlog))
        deep_vision = [proj(p) for proj, p in zip(pl.compound_prompt_projections, pl.compound_prompts_text)]
    n = pl.ctx.shape[0]
    for i in range(1, 12):
        v_in, v_prev = vlog[i][0], vlog[i - 1][1]
        t_in, t_prev = tlog[i][0], tlog[i - 1][1]
        if i < depth:
            torch.testing.assert_close(v_in[:, -n:], deep_vision[i - 1].expand(2, -1, -1))
            torch.testing.assert_close(t_in[:, 1:1 + n], pl.compound_prompts_text[i - 1].expand(5, -1, -1))
            assert torch.equal(v_in[:, :-n], v_prev[:, :-n])  # other tokens untouched
            assert torch.equal(t_in[:, :1], t_prev[:, :1]) and torch.equal(t_in[:, 1 + n:], t_prev[:, 1 + n:])
        else:
            assert torch.equal(v_in, v_prev) and torch.equal(t_in, t_prev)


def test_vision_prompts_per_image_batch_and_text_trimming_are_exact(clip_model):
    tokens = clip.tokenize([f"a photo of a {c}." for c in CLASSNAMES])
    emb = clip_model.token_embedding(tokens)
    full = F.normalize(clip_model.encode_text_embeddings(emb, tokens.argmax(-1)), dim=-1)
    trimmed = encode_class_texts(clip_model, emb, tokens.argmax(-1))
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)


def test_cocoop_chunked_batch_equals_per_image_reference(clip_model):
    torch.manual_seed(4)
    pl = CoCoOpPromptLearner(make_cfg(COCOOP={"N_CTX": 4}), CLASSNAMES, clip_model)
    x = images(7, seed=5)
    with torch.no_grad():
        batched = InstanceConditionedCLIP(clip_model, pl, 10_000)(x)
        chunked = InstanceConditionedCLIP(clip_model, pl, 2 * len(CLASSNAMES) + 1)(x)  # 2 images per call
        # reference: the official per-image loop, full 77-token sequences
        img = F.normalize(clip_model.encode_image(x), dim=-1)
        rows = []
        for f in img:
            ctx = pl.ctx + pl.meta_net(f[None])
            prompts = pl.template(ctx)
            t = F.normalize(clip_model.encode_text_embeddings(prompts, pl.template.eot_indices), dim=-1)
            rows.append(clip_model.logit_scale.exp() * f @ t.t())
        reference = torch.stack(rows)
    torch.testing.assert_close(batched, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(chunked, batched, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["IVLP", "MaPLe", "VPT"])
def test_cached_evaluation_gives_identical_logits(clip_model, method):
    torch.manual_seed(6)
    model = METHODS[method](clip_model).eval()
    x = images(6, seed=7)
    with torch.no_grad():
        plain = torch.cat([model(x[:2]), model(x[2:])])
        with model.cached_text_features():
            cached = torch.cat([model(x[:2]), model(x[2:])])
    assert torch.equal(plain, cached)


def test_vpt_encodes_its_fixed_text_once(clip_model):
    model = METHODS["VPT"](clip_model)
    calls = []
    original = clip_model.encode_text_embeddings
    clip_model.encode_text_embeddings = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        for _ in range(3):
            model(images(2, seed=8)).sum().backward()
    finally:
        del clip_model.encode_text_embeddings
    assert len(calls) == 1


def test_deep_prompt_methods_refuse_a_resnet():
    rn = clip.build_model(make_tiny_clip_state_dict(kind="rn", seed=0))
    with pytest.raises(ValueError, match="trainer MaPLe .* needs a ViT backbone; MODEL.BACKBONE.NAME RN50 is a ResNet"):
        require_vit(rn, "MaPLe", "RN50")


def test_official_ivlp_keys_map_to_ours(clip_model):
    pl = IndependentVLPromptLearner(make_cfg(IVLP={"PROMPT_DEPTH_VISION": 3, "PROMPT_DEPTH_TEXT": 4}),
                                    CLASSNAMES, clip_model)
    ours = {f"prompt_learner.{k}": v for k, v in pl.state_dict().items()}
    official = {
        "prompt_learner.ctx": ours["prompt_learner.ctx"],
        "image_encoder.VPT": ours["prompt_learner.vision.vision_ctx"],
        "image_encoder.transformer.resblocks.1.VPT_shallow": ours["prompt_learner.vision.deep_vision_prompts.0"],
        "image_encoder.transformer.resblocks.2.VPT_shallow": ours["prompt_learner.vision.deep_vision_prompts.1"],
        "text_encoder.transformer.resblocks.1.VPT_shallow": ours["prompt_learner.deep_text_prompts.0"],
        "text_encoder.transformer.resblocks.3.VPT_shallow": ours["prompt_learner.deep_text_prompts.2"],
        "text_encoder.transformer.resblocks.2.VPT_shallow": ours["prompt_learner.deep_text_prompts.1"],
    }
    mapped = map_official_ivlp_keys(official, "prompt_learner.vision")
    assert set(mapped) == set(ours)
    for k in ours:
        assert torch.equal(mapped[k], ours[k])


def test_deep_prompt_hook_rejects_unknown_position():
    with pytest.raises(ValueError, match="where must be 'text' or 'vision'"):
        DeepPromptHook([], "audio")


# ----------------------------------------------------------------------------- parameter counts
def test_parameter_counts_at_vit_b16_shape(vit_b16_shaped):
    m = vit_b16_shaped
    # MaPLe, 2 ctx, depth 9: the official implementation's count (3.55M in the paper)
    maple = MultiModalPromptLearner(make_cfg(MAPLE={"N_CTX": 2, "PROMPT_DEPTH": 9}), CLASSNAMES, m)
    assert n_params(maple) == 2 * 512 + (512 * 768 + 768) * 9 + 8 * 2 * 512 == 3_555_072
    # IVLP 2+2 ctx, depth 9 both sides (the official vit_b16_c2_ep5_batch4_2+2ctx uses 12)
    ivlp = IndependentVLPromptLearner(make_cfg(IVLP={"PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9}),
                                      CLASSNAMES, m)
    assert n_params(ivlp) == 9 * 2 * 512 + 9 * 2 * 768 == 23_040
    # VPT, official config: 8 tokens, depth 12
    vpt = VisionPromptLearner(make_cfg(VPT={"N_CTX_VISION": 8, "PROMPT_DEPTH_VISION": 12}), CLASSNAMES, m)
    assert n_params(vpt) == 12 * 8 * 768 == 73_728
    # CoCoOp with "a photo of a": 4 ctx + meta-net 512 -> 32 -> 512
    cocoop = CoCoOpPromptLearner(make_cfg(COCOOP={"CTX_INIT": "a photo of a"}), CLASSNAMES, m)
    assert n_params(cocoop) == 4 * 512 + (512 * 32 + 32) + (32 * 512 + 512) == 35_360
    assert math.isclose(n_params(maple) / 1e6, 3.555, abs_tol=1e-3)
    # IVLP 2+2 ctx at the official depth 12, and deep language prompting (4 ctx, depth 12)
    ivlp12 = IndependentVLPromptLearner(make_cfg(IVLP={"PROMPT_DEPTH_VISION": 12, "PROMPT_DEPTH_TEXT": 12}),
                                        CLASSNAMES, m)
    assert n_params(ivlp12) == 30_720
    lang = IndependentVLPromptLearner(make_cfg(IVLP={"N_CTX_TEXT": 4, "N_CTX_VISION": 0, "PROMPT_DEPTH_VISION": 0,
                                                     "PROMPT_DEPTH_TEXT": 12}), CLASSNAMES, m)
    assert n_params(lang) == 24_576
    # CoOp, 16 generic context vectors
    from trainers.coop import CoOpPromptLearner
    assert n_params(CoOpPromptLearner(make_cfg(COOP={"N_CTX": 16}), CLASSNAMES, m)) == 8_192


@pytest.mark.parametrize("where", ["text", "vision"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_splice_overwrites_in_place_only_without_gradients(where, per_sample):
    from trainers.prompting import splice_prompts

    torch.manual_seed(0)
    x = torch.randn(3, 9, 4)
    prompts = torch.randn(3, 2, 4) if per_sample else torch.randn(2, 4)
    rows = slice(1, 3) if where == "text" else slice(7, 9)
    expected = x.clone()
    expected[:, rows] = prompts
    with torch.enable_grad():  # training: a new tensor, x untouched, gradient reaches the prompts
        leaf = prompts.clone().requires_grad_(True)
        built = splice_prompts(x, leaf, where)
        assert built is not x and torch.equal(built, expected) and not torch.equal(x, expected)
        built.sum().backward()
        assert torch.equal(leaf.grad, torch.full_like(leaf, 3.0 if not per_sample else 1.0))
    with torch.no_grad():  # evaluation: the rows of x are overwritten, no copy of the sequence
        assert splice_prompts(x, prompts, where) is x
    assert torch.equal(x, expected)
