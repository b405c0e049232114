"""Bloom on the tiny CLIP: gates, fusion arithmetic, where the fused prompts sit in each layer,
training of every FUSION x DIRECTION variant, the ViT-B/16 parameter count, configs, scripts,
the gate plotting tool, and (slow) train.py and the base-to-novel scripts end to end."""
import importlib.util
import itertools
import json
import os
from pathlib import Path

import pytest

import torch
import torch.nn.functional as F
import yaml

import clip
from conftest import REPO, run_train, train_server_env
from tests.helpers.script_harness import make_script_env, make_script_repo, recorded_calls, run_script
# the tiny CLIP and the ViT-B/16-shaped one are fixtures of test_lineage, shared here
from tests.helpers.methods import CLASSNAMES, images, n_params, record
from tests.helpers.methods import make_cfg as make_lineage_cfg
from trainers.base import PromptedCLIP
from trainers.bloom import DIRECTIONS, FUSIONS, BloomPromptLearner
from trainers.prompting import init_text_context


def make_cfg(**bloom):
    """Default config with every trainer node and the given TRAINER.BLOOM values."""
    return make_lineage_cfg(BLOOM=bloom)


def learner(clip_model, seed=0, **bloom):
    torch.manual_seed(seed)
    return BloomPromptLearner(make_cfg(**bloom), CLASSNAMES, clip_model)


def reference_projection(bottleneck, x):
    """Per-layer Linear -> ReLU -> Linear written as a plain loop over layers."""
    rows = []
    for j in range(x.shape[0]):
        hidden = F.linear(x[j], bottleneck.down_weight[j], bottleneck.down_bias[j]).relu()
        rows.append(F.linear(hidden, bottleneck.up_weight[j], bottleneck.up_bias[j]))
    return torch.stack(rows)


# ----------------------------------------------------------------------------- gates and fusion
def test_gate_weights_are_a_softmax_summing_to_one_per_layer_and_branch(clip_model):
    pl = learner(clip_model, END=7)
    assert pl.gate_text.shape == pl.gate_vision.shape == (7, 2)
    # uniform at initialisation
    for probs in pl.gate_probabilities().values():
        torch.testing.assert_close(probs, torch.full((7, 2), 0.5))
    with torch.no_grad():
        pl.gate_text.normal_(std=3.0)
        pl.gate_vision.normal_(std=3.0)
    probs = pl.gate_probabilities()
    assert set(probs) == {"text", "vision"}
    for branch, gate in (("text", pl.gate_text), ("vision", pl.gate_vision)):
        torch.testing.assert_close(probs[branch].sum(-1), torch.ones(7))
        torch.testing.assert_close(pl.gate_weights(gate), gate.softmax(-1))
        assert not torch.allclose(probs[branch][:, 0], torch.full((7,), 0.5))


def test_gate_fusion_is_the_convex_combination_of_own_and_translated(clip_model):
    pl = learner(clip_model, END=5)
    with torch.no_grad():
        pl.gate_text.normal_(std=2.0)
        pl.gate_vision.normal_(std=2.0)
        fused_text, fused_vision = pl.fused_prompts()
        s_l, s_v = pl.gate_text.softmax(-1), pl.gate_vision.softmax(-1)
        expected_text = (s_l[:, 0, None, None] * pl.text_prompts
                         + s_l[:, 1, None, None] * reference_projection(pl.proj_v2l, pl.vision_prompts))
        expected_vision = (s_v[:, 0, None, None] * pl.vision_prompts
                           + s_v[:, 1, None, None] * reference_projection(pl.proj_l2v, pl.text_prompts))
    torch.testing.assert_close(fused_text, expected_text)
    torch.testing.assert_close(fused_vision, expected_vision)


def test_saturated_gates_give_own_or_translated_prompts(clip_model):
    pl = learner(clip_model)
    with torch.no_grad():
        pl.gate_text.copy_(torch.tensor([60.0, -60.0]).expand(12, 2))
        pl.gate_vision.copy_(torch.tensor([-60.0, 60.0]).expand(12, 2))
        fused_text, fused_vision = pl.fused_prompts()
        torch.testing.assert_close(fused_text, pl.text_prompts, rtol=0, atol=1e-6)
        torch.testing.assert_close(fused_vision, reference_projection(pl.proj_l2v, pl.text_prompts))


def test_add_and_concat_fusions(clip_model):
    add = learner(clip_model, FUSION="add", END=4)
    concat = learner(clip_model, FUSION="concat", END=4)
    assert not hasattr(add, "gate_text") and not hasattr(concat, "gate_vision")
    with torch.no_grad():
        text, vision = add.fused_prompts()
        torch.testing.assert_close(text, add.text_prompts + reference_projection(add.proj_v2l, add.vision_prompts))
        torch.testing.assert_close(vision, add.vision_prompts + reference_projection(add.proj_l2v, add.text_prompts))
        text, vision = concat.fused_prompts()
        assert text.shape == (4, 4, clip_model.text_width) and vision.shape == (4, 4, clip_model.vision_width)
        assert torch.equal(text[:, :2], concat.text_prompts) and torch.equal(vision[:, :2], concat.vision_prompts)
        torch.testing.assert_close(text[:, 2:], reference_projection(concat.proj_v2l, concat.vision_prompts))


def test_routing_is_one_hot_forward_with_a_straight_through_gradient(clip_model):
    pl = learner(clip_model, FUSION="routing").train()
    torch.manual_seed(3)
    weights = pl.gate_weights(pl.gate_text)
    assert set(weights.unique().tolist()) <= {0.0, 1.0} and torch.equal(weights.sum(-1), torch.ones(12))
    # each layer's fused prompt is exactly one of the two candidates
    torch.manual_seed(4)
    fused_text, _ = pl.fused_prompts()
    torch.manual_seed(4)
    chosen = pl.gate_weights(pl.gate_text).argmax(-1)
    translated = pl.proj_v2l(pl.vision_prompts)
    for j in range(12):
        assert torch.equal(fused_text[j], (pl.text_prompts if chosen[j] == 0 else translated)[j])
    (fused_text * torch.randn_like(fused_text)).sum().backward()
    assert pl.gate_text.grad is not None and pl.gate_text.grad.abs().sum() > 0


def test_routing_in_eval_mode_takes_the_argmax_deterministically(clip_model):
    pl = learner(clip_model, FUSION="routing").eval()
    with torch.no_grad():
        pl.gate_vision.copy_(torch.tensor([[0.3, -0.1], [-0.2, 0.4]]).repeat(6, 1))
        first = pl.fused_prompts()
        second = pl.fused_prompts()
        assert all(torch.equal(a, b) for a, b in zip(first, second))
        expected = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(6, 1)
        assert torch.equal(pl.gate_weights(pl.gate_vision), expected)
        translated = pl.proj_l2v(pl.text_prompts)
        assert torch.equal(first[1][0], pl.vision_prompts[0]) and torch.equal(first[1][1], translated[1])


@pytest.mark.parametrize("direction,has", [("v2l", ("proj_v2l", "gate_text")), ("l2v", ("proj_l2v", "gate_vision"))])
def test_one_direction_builds_only_what_it_uses(clip_model, direction, has):
    pl = learner(clip_model, DIRECTION=direction)
    names = {n.split(".")[0] for n, _ in pl.named_parameters()}
    assert names == {"text_prompts", "vision_prompts", *has}
    fused_text, fused_vision = pl.fused_prompts()
    # the branch that receives nothing keeps its own prompts
    if direction == "v2l":
        assert torch.equal(fused_vision, pl.vision_prompts)
    else:
        assert torch.equal(fused_text, pl.text_prompts)


# ----------------------------------------------------------------------------- initialisation
def test_initialisation_and_checkpoint_keys(clip_model):
    pl = learner(clip_model, INIT_STD=0.2)
    expected = clip_model.token_embedding(clip.tokenize(["a photo of a"]))[0, 1:3]
    torch.testing.assert_close(pl.text_prompts[0], expected)  # layer 0 from "a photo"
    # deeper language prompts and all vision prompts ~ N(0, 0.2)
    for noise in (pl.text_prompts[1:], pl.vision_prompts):
        assert abs(noise.std().item() - 0.2) < 0.02 and abs(noise.mean().item()) < 0.02
    # "of a" stays fixed after the two context positions
    of_a = clip_model.token_embedding(clip.tokenize(["of a"]))[0, 1:3]
    torch.testing.assert_close(pl.template.token_suffix[:, :2], of_a.expand(5, -1, -1))
    assert set(pl.state_dict()) == {
        "text_prompts", "vision_prompts", "gate_text", "gate_vision",
        *(f"proj_{d}.{p}" for d in ("v2l", "l2v") for p in ("down_weight", "down_bias", "up_weight", "up_bias"))}


@pytest.mark.parametrize("bloom,message", [
    ({"END": 13}, "TRAINER.BLOOM.END 13 exceeds the 12 layers of the text encoder of backbone"),
    ({"START": 4, "END": 4}, "TRAINER.BLOOM.END must be an integer > TRAINER.BLOOM.START (4), got 4"),
    ({"START": -1}, "TRAINER.BLOOM.START must be an integer >= 0, got -1"),
    ({"N_CTX": 0}, "TRAINER.BLOOM.N_CTX must be an integer >= 1, got 0"),
    ({"MIDDLE_DIM": 0}, "TRAINER.BLOOM.MIDDLE_DIM must be an integer >= 1, got 0"),
    ({"INIT_STD": -0.1}, "TRAINER.BLOOM.INIT_STD must be a number >= 0, got -0.1"),
    ({"FUSION": "mean"}, "TRAINER.BLOOM.FUSION must be one of gate, add, concat, routing, got 'mean'"),
    ({"DIRECTION": "up"}, "TRAINER.BLOOM.DIRECTION must be one of both, v2l, l2v, got 'up'"),
    ({"GUMBEL_TAU": 0.0}, "TRAINER.BLOOM.GUMBEL_TAU must be a number > 0, got 0.0"),
])
def test_bad_values_are_one_line_errors_naming_the_key(clip_model, bloom, message):
    with pytest.raises(ValueError) as info:
        learner(clip_model, **bloom)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- prompt placement
def run_recorded(clip_model, pl, n_images=2):
    prompts = pl()
    vlog, tlog = {}, {}
    with torch.no_grad():
        clip_model.encode_image(images(n_images, 3), prompts=prompts.vision_prompts,
                                hook=record(prompts.vision_hook, vlog))
        text = clip_model.encode_text_embeddings(prompts.text_embeddings, prompts.eot_indices,
                                                 hook=record(prompts.text_hook, tlog))
    return prompts, vlog, tlog, text


@pytest.mark.parametrize("fusion,end", [("gate", 12), ("gate", 5), ("concat", 9)])
def test_fused_prompts_replace_prompt_tokens_until_end_then_carry_outputs(clip_model, fusion, end):
    pl = learner(clip_model, seed=2, FUSION=fusion, END=end)
    with torch.no_grad():
        if fusion == "gate":
            pl.gate_text.normal_(std=2.0)
            pl.gate_vision.normal_(std=2.0)
        fused_text, fused_vision = pl.fused_prompts()
    _, vlog, tlog, _ = run_recorded(clip_model, pl)
    t, v = fused_text.shape[1], fused_vision.shape[1]
    assert t == v == (4 if fusion == "concat" else 2)
    # layer 0: vision prompts appended before ln_pre, text prompts after SOS with their positions
    torch.testing.assert_close(vlog[0][0][:, -v:], clip_model.visual.ln_pre(fused_vision[0]).expand(2, -1, -1))
    torch.testing.assert_close(tlog[0][0][:, 1:1 + t],
                               (fused_text[0] + clip_model.positional_embedding[1:1 + t]).expand(5, -1, -1))
    for i in range(1, 12):
        v_in, v_prev = vlog[i][0], vlog[i - 1][1]
        t_in, t_prev = tlog[i][0], tlog[i - 1][1]
        if i < end:
            torch.testing.assert_close(v_in[:, -v:], fused_vision[i].expand(2, -1, -1))
            torch.testing.assert_close(t_in[:, 1:1 + t], fused_text[i].expand(5, -1, -1))
            assert torch.equal(v_in[:, :-v], v_prev[:, :-v])
            assert torch.equal(t_in[:, :1], t_prev[:, :1]) and torch.equal(t_in[:, 1 + t:], t_prev[:, 1 + t:])
        else:
            assert torch.equal(v_in, v_prev) and torch.equal(t_in, t_prev)


def test_concat_template_keeps_the_rest_of_ctx_init_fixed(clip_model):
    pl = learner(clip_model, FUSION="concat")
    _, _, tlog, _ = run_recorded(clip_model, pl)
    # [SOS][own x2][translated x2] then "of a <class>."
    of_a = clip_model.token_embedding(clip.tokenize(["of a"]))[0, 1:3] + clip_model.positional_embedding[5:7]
    torch.testing.assert_close(tlog[0][0][:, 5:7], of_a.expand(5, -1, -1))


def test_late_start_inserts_prompts_at_start_and_reads_the_shifted_eot(clip_model):
    start, end = 3, 8
    pl = learner(clip_model, seed=5, START=start, END=end)
    with torch.no_grad():
        fused_text, fused_vision = pl.fused_prompts()
    prompts, vlog, tlog, text = run_recorded(clip_model, pl)
    assert prompts.vision_prompts is None
    n_tokens = 1 + (32 // 8) ** 2
    # before START: the unprompted image and the hand-written "a photo of a <class>."
    tokens = clip.tokenize([f"a photo of a {c}." for c in CLASSNAMES])
    length = prompts.text_embeddings.shape[1]
    assert torch.equal(prompts.text_embeddings, clip_model.token_embedding(tokens)[:, :length])
    for i in range(start):
        assert vlog[i][0].shape[1] == n_tokens and tlog[i][0].shape[1] == length
    # at START: inserted (vision after the patches, text after SOS), the rest untouched
    v_in, v_prev = vlog[start][0], vlog[start - 1][1]
    t_in, t_prev = tlog[start][0], tlog[start - 1][1]
    assert v_in.shape[1] == n_tokens + 2 and t_in.shape[1] == length + 2
    torch.testing.assert_close(v_in[:, -2:], fused_vision[0].expand(2, -1, -1))
    torch.testing.assert_close(t_in[:, 1:3], fused_text[0].expand(5, -1, -1))
    assert torch.equal(v_in[:, :-2], v_prev) and torch.equal(t_in[:, :1], t_prev[:, :1])
    assert torch.equal(t_in[:, 3:], t_prev[:, 1:])
    for i in range(start + 1, 12):
        v_in, v_prev = vlog[i][0], vlog[i - 1][1]
        t_in, t_prev = tlog[i][0], tlog[i - 1][1]
        if i < end:
            torch.testing.assert_close(v_in[:, -2:], fused_vision[i - start].expand(2, -1, -1))
            torch.testing.assert_close(t_in[:, 1:3], fused_text[i - start].expand(5, -1, -1))
        else:
            assert torch.equal(v_in, v_prev) and torch.equal(t_in, t_prev)
    # the text feature is read at the end-of-text token, now 2 positions later
    assert torch.equal(prompts.eot_indices, tokens.argmax(-1) + 2)
    final = clip_model.ln_final(tlog[11][1])
    expected = final[torch.arange(5), tokens.argmax(-1) + 2] @ clip_model.text_projection
    torch.testing.assert_close(text, expected)


def test_cached_evaluation_gives_identical_logits(clip_model):
    for fusion in ("gate", "routing"):
        model = PromptedCLIP(clip_model, learner(clip_model, seed=6, FUSION=fusion)).eval()
        x = images(6, seed=7)
        with torch.no_grad():
            plain = torch.cat([model(x[:3]), model(x[3:])])
            with model.cached_text_features():
                cached = torch.cat([model(x[:3]), model(x[3:])])
        assert torch.equal(plain, cached), fusion


# ----------------------------------------------------------------------------- training
@pytest.mark.slow
@pytest.mark.parametrize("fusion,direction", list(itertools.product(FUSIONS, DIRECTIONS)))
def test_every_variant_trains_only_the_prompt_learner_and_fits_a_fixed_batch(clip_model, fusion, direction):
    torch.manual_seed(0)
    model = PromptedCLIP(clip_model, BloomPromptLearner(make_cfg(FUSION=fusion, DIRECTION=direction, END=6),
                                                        CLASSNAMES, clip_model))
    clip_before = {k: v.clone() for k, v in clip_model.state_dict().items()}
    learner_before = {k: v.clone() for k, v in model.prompt_learner.state_dict().items()}
    x, y = images(5, seed=1), torch.arange(5)

    def eval_loss():
        # eval mode: routing takes argmax(G), so the loss before and after is not a Gumbel sample
        model.eval()
        with torch.no_grad():
            loss = F.cross_entropy(model(x), y).item()
        model.train()
        return loss

    initial = eval_loss()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    reached = {n: False for n, _ in model.prompt_learner.named_parameters()}
    for step in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for name, p in model.prompt_learner.named_parameters():
            reached[name] |= p.grad is not None and bool(p.grad.abs().sum() > 0)
        if step == 0 and fusion != "routing":
            assert all(reached.values()), [n for n, r in reached.items() if not r]
        opt.step()
    # routing picks one candidate per layer and step, so a projection can sit out a step
    assert all(reached.values()), [n for n, r in reached.items() if not r]
    final = eval_loss()
    assert final < 0.6 * initial, (initial, final)
    for k, v in clip_model.state_dict().items():
        assert torch.equal(v, clip_before[k]), f"frozen CLIP weight {k} changed"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_learner.") for n in trainable)
    assert all(not torch.equal(v, learner_before[k]) for k, v in model.prompt_learner.state_dict().items())


# ----------------------------------------------------------------------------- parameter count
def test_parameter_count_at_vit_b16_shape(vit_b16_shaped):
    d_l, d_v, d_m = 512, 768, 64
    bottleneck_v2l = d_v * d_m + d_m + d_m * d_l + d_l
    bottleneck_l2v = d_l * d_m + d_m + d_m * d_v + d_v
    basic = BloomPromptLearner(make_cfg(), CLASSNAMES, vit_b16_shaped)
    assert n_params(basic) == 12 * (2 * (d_l + d_v) + bottleneck_v2l + bottleneck_l2v + 2 * 2) == 2_013_744
    cross = BloomPromptLearner(make_cfg(N_CTX=1, END=2), CLASSNAMES, vit_b16_shaped)
    assert n_params(cross) == 333_064
    one_way = BloomPromptLearner(make_cfg(DIRECTION="v2l"), CLASSNAMES, vit_b16_shaped)
    assert n_params(one_way) == 12 * (2 * (d_l + d_v) + bottleneck_v2l + 2) == 1_020_696


def bloom_count(layout, d_m, d_l=512, d_v=768, n_ctx=2, layers=12):
    """Trainable values of Bloom at ViT-B/16 widths, by the formula of docs/METHODS.md."""
    v2l = d_v * d_m + d_m + d_m * d_l + d_l
    l2v = d_l * d_m + d_m + d_m * d_v + d_v
    if layout == "per_layer":
        return layers * (n_ctx * (d_l + d_v) + v2l + l2v + 2 * 2)
    fused = layers - 1  # MaPLe's layer-0 coupling, Bloom at layers 1..11
    return (d_l * d_v + d_v) + fused * (v2l + l2v + 2 * 2) + layers * n_ctx * d_l + fused * n_ctx * d_v


@pytest.mark.parametrize("d_m", [16, 32, 64, 128, 256])
def test_both_layouts_counted_at_every_ablated_middle_dim(vit_b16_shaped, d_m):
    for layout in ("per_layer", "maple_derived"):
        pl = BloomPromptLearner(make_cfg(LAYOUT=layout, MIDDLE_DIM=d_m), CLASSNAMES, vit_b16_shaped)
        assert n_params(pl) == bloom_count(layout, d_m), (layout, d_m)


def test_the_papers_count_is_the_maple_derived_layout(vit_b16_shaped):
    per_layer = BloomPromptLearner(make_cfg(), CLASSNAMES, vit_b16_shaped)
    maple = BloomPromptLearner(make_cfg(LAYOUT="maple_derived"), CLASSNAMES, vit_b16_shaped)
    assert n_params(per_layer) == 2_013_744   # -10.1 % from the paper's 2.24M
    assert n_params(maple) == 2_240_940       # +0.04 %
    assert abs(n_params(maple) / 2.24e6 - 1) < 0.005 and abs(n_params(per_layer) / 2.24e6 - 1) > 0.08
    # the layer-0 coupling is MaPLe's Linear(512 -> 768): 393,984 values
    assert n_params(maple.proj) == 393_984
    # "d_m 256 doubles the parameters": true against d_m 128, not against d_m 64
    for layout, ratio in (("per_layer", 1.99), ("maple_derived", 1.89)):
        assert round(bloom_count(layout, 256) / bloom_count(layout, 128), 2) == ratio
        assert bloom_count(layout, 256) / bloom_count(layout, 64) > 3.4


def test_maple_derived_layer_0_is_mapled_coupling_and_fusion_starts_at_layer_1(clip_model):
    pl = learner(clip_model, seed=3, LAYOUT="maple_derived", END=5)
    assert pl.text_prompts.shape[0] == 5 and pl.vision_prompts.shape[0] == 4 and pl.gate_text.shape == (4, 2)
    assert pl.first_fused_layer == 1
    with torch.no_grad():
        pl.gate_text.normal_()
        pl.gate_vision.normal_()
        fused_text, fused_vision = pl.fused_prompts()
        text, vision = pl.text_prompts, pl.vision_prompts
        # layer 0: the language context itself, and its linear projection (MaPLe)
        torch.testing.assert_close(fused_text[0], text[0])
        torch.testing.assert_close(fused_vision[0], pl.proj(text[0]))
        # layers 1..4: Bloom's gated fusion of the own and the translated prompt
        wt, wv = pl.gate_text.softmax(-1), pl.gate_vision.softmax(-1)
        torch.testing.assert_close(fused_text[1:], wt[:, :1, None] * text[1:]
                                   + wt[:, 1:, None] * reference_projection(pl.proj_v2l, vision))
        torch.testing.assert_close(fused_vision[1:], wv[:, :1, None] * vision
                                   + wv[:, 1:, None] * reference_projection(pl.proj_l2v, text[1:]))
    model = PromptedCLIP(clip_model, pl)
    F.cross_entropy(model(images(3, seed=4)), torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pl.parameters())


@pytest.mark.parametrize("reading, blocks", [("zero_based", (1, 12)), ("one_based", (0, 11))])
def test_the_papers_interval_under_both_readings(clip_model, reading, blocks):
    """[1, 12) is 11 layers either way; read as MaPLe's 0-based block indices it reaches the last one."""
    pl = learner(clip_model, INTERVAL=[1, 12], INTERVAL_READING=reading)
    assert (pl.start, pl.start + pl.text_prompts.shape[0]) == blocks
    seen = {}
    model = PromptedCLIP(clip_model, pl)
    prompts = pl()
    with torch.no_grad():
        model.clip_model.encode_image(images(1, seed=1), prompts=prompts.vision_prompts,
                                      hook=record(prompts.vision_hook, seen))
    fused_vision = pl.fused_prompts()[1].detach()
    start, end = blocks
    # blocks whose input carries that layer's own fused prompts (block 0's enter before ln_pre)
    replaced = [i for i in sorted(seen) if start <= i < end and i > 0
                and torch.equal(seen[i][0][0, -2:], fused_vision[i - start])]
    assert replaced == list(range(max(start, 1), end))
    assert not torch.equal(seen[11][0][0, -2:], fused_vision[-1]) if end == 11 else replaced[-1] == 11


def test_interval_and_layout_errors_name_the_key(clip_model):
    for values, message in (
            ({"INTERVAL": [4, 4]}, "TRAINER.BLOOM.INTERVAL must be a range with an end > its start (block 4), got [4, 4]"),
            ({"INTERVAL": [0, 12], "INTERVAL_READING": "one_based"},
             "TRAINER.BLOOM.INTERVAL must be a range of layers that starts at block 0 or later, got [0, 12]"),
            ({"INTERVAL": [1, 13]}, "TRAINER.BLOOM.INTERVAL [1, 13] exceeds the 12 layers of the text encoder"),
            ({"INTERVAL_READING": "1-based"}, "TRAINER.BLOOM.INTERVAL_READING must be one of zero_based, one_based"),
            ({"LAYOUT": "maple_derived", "START": 2}, "TRAINER.BLOOM.LAYOUT must be used with a range that starts "
                                                     "at block 0 or 1"),
            ({"LAYOUT": "maple_derived", "FUSION": "concat"}, "TRAINER.BLOOM.LAYOUT must be per_layer with FUSION "
                                                              "concat"),
            ({"LAYOUT": "maple_derived", "END": 1}, "TRAINER.BLOOM.LAYOUT maple_derived needs at least blocks 0 and 1"),
            ({"INIT_MODE": "zero"}, "TRAINER.BLOOM.INIT_MODE must be one of paper, intact")):
        with pytest.raises(ValueError) as caught:
            learner(clip_model, **values)
        assert message in str(caught.value), (values, str(caught.value))


def _layer0_cosine(pl):
    """Cosine between the fused layer-0 language prompt and the CTX_INIT embedding, per token."""
    with torch.no_grad():
        fused = pl.fused_prompts()[0][0]
        ctx, _, _ = init_text_context(pl._clip_for_test, 2, "a photo of a", rule="maple")
    return F.cosine_similarity(fused, ctx, dim=-1)


def test_intact_init_keeps_the_hand_written_context_at_step_0():
    """On the mini CLIP (real word embeddings), the paper's initialisation drowns "a photo" in the
    translated vision prompt (cosine ~0.2); INIT_MODE intact starts exactly at "a photo"."""
    mini, _ = clip.load("mini-clip")
    cosines = {}
    for layout, mode in itertools.product(("per_layer", "maple_derived"), ("paper", "intact")):
        pl = learner(mini, seed=0, LAYOUT=layout, INIT_MODE=mode, END=4)
        pl._clip_for_test = mini
        cosines[layout, mode] = _layer0_cosine(pl)
        if mode == "intact":
            with torch.no_grad():
                assert torch.equal(pl.proj_v2l(pl.vision_prompts), torch.zeros_like(pl.text_prompts[-pl.vision_prompts.shape[0]:]))
    assert (cosines["per_layer", "paper"] < 0.5).all(), cosines["per_layer", "paper"]
    for key in (("per_layer", "intact"), ("maple_derived", "paper"), ("maple_derived", "intact")):
        torch.testing.assert_close(cosines[key], torch.ones(2))


# ----------------------------------------------------------------------------- configs and scripts
CONFIGS = {
    "vit_b16_c2_ep5_batch4_2ctx": (0.0035, 5, {"N_CTX": 2, "START": 0, "END": 12}),
    "vit_b16_c2_ep2_batch4_1ctx_cross_datasets": (0.0026, 2, {"N_CTX": 1, "START": 0, "END": 2}),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_files_merge_with_the_paper_values(name):
    lr, epochs, keys = CONFIGS[name]
    cfg = make_cfg()
    cfg.merge_from_file(str(REPO / "configs/trainers/Bloom" / f"{name}.yaml"))
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == ("sgd", lr, epochs)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4 and cfg.MODEL.BACKBONE.NAME == "ViT-B/16"
    assert (cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_CONS_LR) == ("cosine", 1, 1e-5)
    for key, value in {**keys, "MIDDLE_DIM": 64, "FUSION": "gate", "DIRECTION": "both", "INIT_STD": 0.2,
                       "CTX_INIT": "a photo of a"}.items():
        assert cfg.TRAINER.BLOOM[key] == value, key
    maple = yaml.safe_load((REPO / "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml").read_text())
    ours = yaml.safe_load((REPO / "configs/trainers/Bloom" / f"{name}.yaml").read_text())
    assert ours["INPUT"] == maple["INPUT"] and ours["DATALOADER"] == maple["DATALOADER"]


def test_scripts_build_the_protocol_commands(tmp_path):
    repo = make_script_repo(tmp_path / "repo", ["Bloom"], ("eurosat", "imagenet", "caltech101"))
    env = make_script_env(tmp_path)
    b2n, xd = "vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep2_batch4_1ctx_cross_datasets"
    steps = [("base2new_train", "eurosat"), ("base2new_test", "eurosat"), ("xd_train", "imagenet"),
             ("xd_test", "caltech101")]
    for step, dataset in steps:
        proc = run_script(repo, f"bloom/{step}_bloom.sh", [dataset, "1"], env, tmp_path)
        assert proc.returncode == 0, (step, proc.stderr)
    calls = [argv for argv, _ in recorded_calls(env)]
    assert len(calls) == 4 and all(a[a.index("--trainer") + 1] == "Bloom" for a in calls)
    cfgs = [a[a.index("--config-file") + 1] for a in calls]
    assert cfgs == [f"configs/trainers/Bloom/{c}.yaml" for c in (b2n, b2n, xd, xd)]
    train_dir = f"output/base2new/train_base/eurosat/shots_16/Bloom/{b2n}/seed1"
    assert calls[0][calls[0].index("--output-dir") + 1] == train_dir
    assert calls[1][calls[1].index("--model-dir") + 1] == train_dir
    assert calls[1][calls[1].index("--load-epoch") + 1] == "5" and "--eval-only" in calls[1]
    xd_dir = f"output/xd/train/imagenet/shots_16/Bloom/{xd}/seed1"
    assert calls[3][calls[3].index("--model-dir") + 1] == xd_dir
    assert calls[3][-3:] == ["--load-epoch", "2", "--eval-only"]


# ----------------------------------------------------------------------------- gate plot tool
def load_plot_gates():
    spec = importlib.util.spec_from_file_location("plot_gates", REPO / "tools" / "plot_gates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_gates_prints_the_table_and_writes_a_png(tmp_path, clip_model, capsys):
    plot_gates = load_plot_gates()
    pl = learner(clip_model, END=3)
    with torch.no_grad():
        pl.gate_text.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]]))
    run = tmp_path / "run" / "prompt_learner"
    run.mkdir(parents=True)
    for epoch in (1, 2):  # the newest epoch is the one read
        sd = pl.state_dict() if epoch == 2 else {**pl.state_dict(), "gate_text": torch.zeros(3, 2)}
        torch.save({"state_dict": sd, "epoch": epoch}, run / f"model.pth.tar-{epoch}")
    out = tmp_path / "gates.png"
    assert plot_gates.main(["--checkpoint", str(tmp_path / "run"), "--out", str(out), "--first-layer", "4"]) == 0
    printed = capsys.readouterr()
    assert "model.pth.tar-2" in printed.out
    rows = [line.split() for line in printed.out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["4", "5", "6"]
    # columns: vision own, vision translated, language own, language translated
    s = torch.tensor([2.0, 0.0]).softmax(0)
    assert rows[1][3:] == [f"{s[0]:.4f}", f"{s[1]:.4f}"] and rows[0][1:3] == ["0.5000", "0.5000"]
    if importlib.util.find_spec("matplotlib") is None:
        assert not out.exists() and "pip install matplotlib" in printed.err
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_gates_refuses_a_checkpoint_without_gates(tmp_path, clip_model, capsys):
    plot_gates = load_plot_gates()
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": learner(clip_model, FUSION="add").state_dict(), "epoch": 1}, path)
    assert plot_gates.main(["--checkpoint", str(path), "--out", str(tmp_path / "g.png")]) == 1
    assert "no per-layer fusion weights" in capsys.readouterr().err
    assert plot_gates.main(["--checkpoint", str(tmp_path / "missing"), "--out", "g.png"]) == 1


# ----------------------------------------------------------------------------- end to end (slow)
SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")


def accuracy(out):
    return json.loads(Path(out, "results.json").read_text())["metrics"]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("fusion, layout", [("gate", "per_layer"), ("routing", "per_layer"), ("gate", "maple_derived")])
def test_train_py_trains_then_eval_only_reproduces_the_accuracy(tmp_path, eurosat_root, tiny_clip_path, fusion,
                                                                layout):
    common = ["--root", eurosat_root, "--seed", 1, "--trainer", "Bloom", "--dataset-config-file", EUROSAT_CFG,
              "--config-file", SMOKE_CFG, "--backbone", tiny_clip_path]
    opts = ["DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", 1,
            "TRAINER.BLOOM.PREC", "fp32", "TRAINER.BLOOM.FUSION", fusion, "TRAINER.BLOOM.LAYOUT", layout]
    out = tmp_path / "train"
    proc = run_train(*common, "--output-dir", out, *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert {"text_prompts", "vision_prompts", "gate_text", "gate_vision"} <= set(ckpt["state_dict"])
    assert ("proj.weight" in ckpt["state_dict"]) is (layout == "maple_derived")
    assert not any(k.startswith(("clip_model.", "template.")) for k in ckpt["state_dict"])
    trained = sum(v.numel() for v in ckpt["state_dict"].values())
    assert f"# trainable params: {trained:,}" in (out / "log.txt").read_text()
    proc = run_train(*common, "--output-dir", tmp_path / "eval", "--eval-only", "--model-dir", out,
                     "--load-epoch", 1, *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert accuracy(tmp_path / "eval") == accuracy(out)


@pytest.mark.slow
def test_maple_derived_layout_resumes_exactly(tmp_path, eurosat_root, tiny_clip_path):
    args = ["--root", eurosat_root, "--seed", 1, "--trainer", "Bloom", "--dataset-config-file", EUROSAT_CFG,
            "--config-file", SMOKE_CFG, "--backbone", tiny_clip_path, "--output-dir", tmp_path / "run",
            "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1, "TRAINER.BLOOM.PREC", "fp32",
            "TRAINER.BLOOM.LAYOUT", "maple_derived", "TRAINER.BLOOM.INIT_MODE", "intact"]
    assert run_train(*args).returncode == 0
    done = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    final = torch.load(tmp_path / "run" / "prompt_learner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    for name in ("results.json", "prompt_learner/model.pth.tar-2"):
        (tmp_path / "run" / name).unlink()
    proc = run_train(*args)
    assert proc.returncode == 0 and "will resume training" in proc.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text())["metrics"] == done
    again = torch.load(tmp_path / "run" / "prompt_learner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert all(torch.equal(final[k], again[k]) for k in final)


@pytest.mark.slow
def test_base2new_scripts_train_then_evaluate_novel_classes(tmp_path, tiny_clip_path, eurosat_root):
    env = dict(os.environ)
    env.update(DATA=eurosat_root, OUTPUT=str(tmp_path / "out"), **train_server_env(), SHOTS="2", LOADEP="1",
               EXTRA_OPTS=(f"--backbone {tiny_clip_path} --device cpu INPUT.SIZE (32,32) OPTIM.MAX_EPOCH 1 "
                           "DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 50 TRAINER.BLOOM.PREC fp32"))
    env.pop("SUB", None)
    for step in ("base2new_train", "base2new_test"):
        proc = run_script(REPO, f"bloom/{step}_bloom.sh", ["eurosat", "1"], env, tmp_path, timeout=300)
        assert proc.returncode == 0, f"{step}: {proc.stderr[-3000:]}"
    common = "eurosat/shots_2/Bloom/vit_b16_c2_ep5_batch4_2ctx/seed1"
    train_dir = tmp_path / "out" / "base2new" / "train_base" / common
    test_dir = tmp_path / "out" / "base2new" / "test_new" / common
    assert (train_dir / "prompt_learner" / "model.pth.tar-1").is_file()
    results = json.loads((test_dir / "results.json").read_text())
    assert results["trainer"] == "Bloom" and results["subsample_classes"] == "new"
    assert 0.0 <= results["metrics"]["accuracy"] <= 100.0
