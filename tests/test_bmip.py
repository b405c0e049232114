"""BMIP on the tiny CLIP: the fast aggregation against a literal, loop-based
reimplementation of the official one, the paper options, the shared-prompt
modes, training of every variant, checkpoint key mapping, parameter counts."""
import pytest
import torch
import torch.nn.functional as F

from tests.helpers.methods import CLASSNAMES, images, make_cfg
from trainers.base import PromptedCLIP
from trainers.bmip import AGGREGATIONS, BMIP, BMIPPromptLearner

def bmip_cfg(share=True, **bmip):
    return make_cfg(share=share, BMIP=bmip)


# ------------------------------------------------------------------ literal reference
def full_attention_probs(block, x, causal):
    """Head-averaged attention probabilities of ``block`` on ``x`` (N, L, D), computed
    the long way: ln_1, input projection, one head at a time."""
    h = block.ln_1(x)
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    d = x.shape[-1]
    q, k = h @ w[:d].t() + b[:d], h @ w[d:2 * d].t() + b[d:2 * d]
    heads = block.n_head
    hd = d // heads
    length = x.shape[1]
    total = torch.zeros(x.shape[0], length, length)
    for head in range(heads):
        qh, kh = q[..., head * hd:(head + 1) * hd], k[..., head * hd:(head + 1) * hd]
        scores = qh @ kh.transpose(1, 2) / hd ** 0.5
        if causal:
            scores = scores + torch.full((length, length), float("-inf")).triu(1)
        total += scores.softmax(-1)
    return total / heads


def reference_logits(clip_model, learner, image, vision_weight="batch_mean"):
    """Official BMIP forward written out: full 77-token text, loops over prompt tokens."""
    n_ctx = learner.compound_prompts_text[0].shape[0]
    depth = len(learner.compound_prompts_text) + 1
    # --- vision
    vis = clip_model.visual
    x = vis.conv1(image).flatten(2).transpose(1, 2)
    cls = vis.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + vis.positional_embedding
    x = torch.cat([x, learner.proj_t(learner.ctx_t).expand(x.shape[0], -1, -1)], dim=1)
    x = vis.ln_pre(x)
    for i, block in enumerate(vis.transformer.resblocks):
        if 1 <= i <= depth - 1:
            j = i - 1
            local = learner.compound_prompts_visual[j if len(learner.compound_prompts_visual) > 1 else 0]
            foreign = learner.single_layer_t(learner.compound_prompts_text[j])
            probs = full_attention_probs(block, x, causal=False)  # (N, L, L)
            length = x.shape[1]
            rows = []
            for n in range(x.shape[0]):
                if vision_weight == "batch_mean":
                    att = probs.mean(0)[:length - n_ctx].mean(0)
                else:
                    att = probs[n][:length - n_ctx].mean(0)
                tokens = []
                for t in range(n_ctx):  # the official loop over prompt tokens
                    w = torch.sigmoid(learner.vision_gates.weight[j] * att[length - n_ctx + t]
                                      + learner.vision_gates.bias[j])
                    tokens.append(foreign[t] * (1 - w) + w * local[t])
                rows.append(torch.stack(tokens))
            x = torch.cat([x[:, :length - n_ctx], torch.stack(rows)], dim=1)
        x = block(x)
    img = F.normalize(vis.ln_post(x[:, 0]) @ vis.proj, dim=-1)
    # --- text (official: text deep layers 1..depth-2, weight read from row 0)
    # the official 77-token sequences: our template stops after the last EOT, the rest is padding
    cut = learner.template.tokenized_prompts
    tokens = torch.cat([cut, cut.new_zeros(cut.shape[0], 77 - cut.shape[1])], dim=1)
    padding = clip_model.token_embedding(tokens[:, cut.shape[1]:])
    t = torch.cat([learner.template(learner.ctx_t), padding], dim=1) + clip_model.positional_embedding
    for i, block in enumerate(clip_model.transformer.resblocks):
        if 1 <= i <= depth - 2:
            j = i - 1
            local = learner.compound_prompts_text[j]
            foreign = learner.single_layer_v(learner.compound_prompts_visual[j if len(learner.compound_prompts_visual) > 1 else 0])
            probs = full_attention_probs(block, t, causal=True).mean(0)  # averaged over the classes
            new = []
            for k in range(n_ctx):
                assert probs[0, k + 1] == 0  # the SOS row under the causal mask
                w = torch.sigmoid(1.0 * probs[0, k + 1] + learner.text_gates.bias[j])  # a * 0 + b
                new.append(foreign[k] * (1 - w) + w * local[k])
            t = torch.cat([t[:, :1], torch.stack(new).expand(t.shape[0], -1, -1), t[:, 1 + n_ctx:]], dim=1)
        t = block(t)
    t = clip_model.ln_final(t)
    txt = F.normalize(t[torch.arange(t.shape[0]), tokens.argmax(-1)] @ clip_model.text_projection, dim=-1)
    return clip_model.logit_scale.exp() * img @ txt.t()


@pytest.mark.parametrize("share_mode", ["copies", "tied"])
def test_fast_path_equals_literal_official_aggregation(clip_model, share_mode):
    torch.manual_seed(0)
    learner = BMIPPromptLearner(bmip_cfg(SHARED_VISUAL_PROMPT=share_mode), CLASSNAMES, clip_model)
    with torch.no_grad():  # make the layers differ so that a wrong index shows
        for p in learner.compound_prompts_visual:
            p.add_(torch.randn_like(p) * 0.05)
        learner.vision_gates.weight.mul_(30)
    x = images(3, seed=1)
    with torch.no_grad():
        fast = PromptedCLIP(clip_model, learner)(x)
        slow = reference_logits(clip_model, learner, x)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


def test_per_sample_weights_match_reference_and_do_not_depend_on_the_batch(clip_model):
    torch.manual_seed(2)
    learner = BMIPPromptLearner(bmip_cfg(VISION_WEIGHT="per_sample"), CLASSNAMES, clip_model)
    with torch.no_grad():
        learner.vision_gates.weight.mul_(30)
    model = PromptedCLIP(clip_model, learner).eval()
    x = images(4, seed=3)
    with torch.no_grad():
        batch = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(4)])
        reversed_batch = model(x.flip(0)).flip(0)
        slow = reference_logits(clip_model, learner, x, vision_weight="per_sample")
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch, reversed_batch, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch, slow, rtol=1e-4, atol=1e-4)


def test_official_batch_mean_weights_do_depend_on_the_batch(clip_model):
    torch.manual_seed(2)
    learner = BMIPPromptLearner(bmip_cfg(), CLASSNAMES, clip_model)
    with torch.no_grad():
        learner.vision_gates.weight.mul_(300)
    model = PromptedCLIP(clip_model, learner).eval()
    x = images(4, seed=3)
    with torch.no_grad():
        assert not torch.allclose(model(x)[:1], model(x[:1]), atol=1e-6)


@pytest.mark.parametrize("text_weight", ["sos_row", "received"])
def test_cached_text_evaluation_gives_identical_logits(clip_model, text_weight):
    """Class text features built once per evaluation = the text re-encoded for every batch
    (BMIP's text side does not depend on the image, also when its weights read attention)."""
    torch.manual_seed(8)
    learner = BMIPPromptLearner(bmip_cfg(TEXT_WEIGHT=text_weight), CLASSNAMES, clip_model)
    with torch.no_grad():
        learner.vision_gates.weight.mul_(30)
        if learner.text_gates.weight is not None:
            learner.text_gates.weight.mul_(30)
    model = PromptedCLIP(clip_model, learner).eval()
    x = images(6, seed=9)
    with torch.no_grad():
        per_batch = torch.cat([model(x[:2]), model(x[2:])])
        with model.cached_text_features():
            cached = torch.cat([model(x[:2]), model(x[2:])])
    assert torch.equal(per_batch, cached)


def test_paper_text_weight_reads_attention_later_tokens_give(clip_model):
    torch.manual_seed(4)
    learner = BMIPPromptLearner(bmip_cfg(TEXT_WEIGHT="received"), CLASSNAMES, clip_model)
    ps = learner()
    seen, inputs = {}, {}
    gates = learner.text_gates

    class SpyGate:
        def __call__(self, j, att):
            seen[j] = att.detach().clone()
            return gates(j, att)

    hook = ps.text_hook
    hook.gate = SpyGate()

    def recording_hook(i, x, block):
        inputs[i] = x.detach().clone()
        return hook(i, x, block)

    with torch.no_grad():
        clip_model.encode_text_embeddings(ps.text_embeddings, ps.eot_indices, hook=recording_hook)
    assert sorted(seen) == list(range(7))  # depth 9: text deep layers 1..7
    att = seen[0]
    assert att.shape == (len(CLASSNAMES), 2) and (att > 0).all() and (att < 1).all()
    # by hand, class 0, prompt token 0 (position 1), layer 1: mean over the query
    # positions after the prompts (3..EOT) of the attention they give position 1
    probs = full_attention_probs(clip_model.transformer.resblocks[1], inputs[1][:1], causal=True)[0]
    eot = int(ps.eot_indices[0])
    torch.testing.assert_close(att[0, 0], probs[3:eot + 1, 1].mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_every_variant_trains_only_its_prompts(clip_model):
    x, y = images(5, seed=5), torch.arange(5)
    variants = [dict(AGGREGATION=a) for a in AGGREGATIONS] + [
        dict(VISION_WEIGHT="per_sample", TEXT_WEIGHT="received"),
        dict(SHARED_VISUAL_PROMPT="alias"), dict(SHARED_VISUAL_PROMPT="tied"),
        dict(MATCH_TEXT_DEPTH=True), dict(share=False)]
    before = {k: v.clone() for k, v in clip_model.state_dict().items()}
    for opts in variants:
        share = opts.pop("share", True)
        torch.manual_seed(6)
        model = PromptedCLIP(clip_model, BMIPPromptLearner(bmip_cfg(share=share, **opts), CLASSNAMES, clip_model))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=0.05)
        losses = []
        for step in range(50):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if step == 0:
                for name, p in model.prompt_learner.named_parameters():
                    assert p.grad is not None and p.grad.abs().sum() > 0, (opts, name)
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.6 * losses[0], (opts, losses[::6])
        with torch.no_grad():
            assert torch.equal(model(x).argmax(-1), y), opts
        assert all(n.startswith("prompt_learner.") for n, p in model.named_parameters() if p.requires_grad)
    for k, v in clip_model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_shared_visual_prompt_modes(clip_model):
    alias = BMIPPromptLearner(bmip_cfg(SHARED_VISUAL_PROMPT="alias"), CLASSNAMES, clip_model)
    copies = BMIPPromptLearner(bmip_cfg(SHARED_VISUAL_PROMPT="copies"), CLASSNAMES, clip_model)
    tied = BMIPPromptLearner(bmip_cfg(SHARED_VISUAL_PROMPT="tied"), CLASSNAMES, clip_model)
    assert len(alias.compound_prompts_visual) == 8 and len({p.data_ptr() for p in alias.compound_prompts_visual}) == 1
    assert len({p.data_ptr() for p in copies.compound_prompts_visual}) == 8
    assert all(torch.equal(p, copies.compound_prompts_visual[0]) for p in copies.compound_prompts_visual)
    assert len(tied.compound_prompts_visual) == 1
    # casting keeps the alias (the official code loses it when moved to a GPU)
    alias.double()
    assert len({p.data_ptr() for p in alias.compound_prompts_visual}) == 1
    alias.float()

    # one SGD step on the alias applies every layer's own update to the one storage
    torch.manual_seed(7)
    model = PromptedCLIP(clip_model, alias)
    start = alias.compound_prompts_visual[0].detach().clone()
    loss = F.cross_entropy(model(images(3, seed=8)), torch.tensor([0, 1, 2]))
    loss.backward()
    grads = [p.grad.clone() for p in alias.compound_prompts_visual]
    assert sum(g.abs().sum() > 0 for g in grads) == 8
    torch.optim.SGD(alias.compound_prompts_visual.parameters(), lr=0.1).step()
    torch.testing.assert_close(alias.compound_prompts_visual[0].detach(), start - 0.1 * sum(grads))


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_attention_calls_per_block(clip_model, monkeypatch, grad):
    """No attention-probability matrix anywhere, and one attention pass per block at inference."""
    import trainers.bmip as bmip_module
    learner = BMIPPromptLearner(bmip_cfg(), CLASSNAMES, clip_model)
    calls, lse_calls = [], []
    real, real_lse = F.scaled_dot_product_attention, bmip_module.attention_with_lse

    def spy(q, k, v, *args, **kwargs):
        calls.append((q.shape[2], k.shape[2], v.shape[-1], kwargs.get("need_weights")))
        return real(q, k, v, *args, **kwargs)

    def spy_lse(q, k, v):
        lse_calls.append((q.shape[2], k.shape[2], v.shape[-1]))
        return real_lse(q, k, v)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(bmip_module, "attention_with_lse", spy_lse)
    with torch.set_grad_enabled(grad):
        PromptedCLIP(clip_model, learner)(images(2, seed=9))
    head_dim = clip_model.visual.transformer.resblocks[0].head_dim
    n_vision = clip_model.visual.positional_embedding.shape[0] + 2
    full = [c for c in calls if c[0] == c[1]]
    partial = [c for c in calls if c[0] != c[1]]
    if grad:
        # 12 vision + 12 text blocks attend once each over their whole sequence, and the 8 deep
        # vision layers read the attention their old prompts receive with one no-grad fused call
        # over the non-prompt queries (official text weight: no attention needed)
        assert len(full) == 24 and not lse_calls
        assert partial == [(n_vision - 2, n_vision, head_dim, None)] * 8
    else:
        # the 8 deep vision layers: one pass of every query over the non-prompt keys, shared by
        # the read-out and the block, plus the 2 new prompt queries over all keys
        assert len(full) == 4 + 12
        assert lse_calls == [(n_vision, n_vision - 2, head_dim)] * 8
        assert partial == [(2, n_vision, head_dim, None)] * 8


@pytest.mark.parametrize("vision_weight", ["batch_mean", "per_sample"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_pass_inference_equals_the_two_pass_path(clip_model, monkeypatch, vision_weight, dtype):
    """The inference path (read-out and block sharing one attention pass) against the training
    path's two passes, on the same weights: same logits, same recorded weights."""
    import trainers.bmip as bmip_module
    torch.manual_seed(4)
    learner = BMIPPromptLearner(bmip_cfg(VISION_WEIGHT=vision_weight), CLASSNAMES, clip_model)
    with torch.no_grad():
        for p in learner.compound_prompts_visual:
            p.add_(torch.randn_like(p) * 0.5)
        learner.vision_gates.weight.mul_(30)
    model = PromptedCLIP(clip_model, learner)
    x = images(3, seed=5)

    def run(bf16, records=None):
        learner.weight_recorder = records
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x).float()

    one_weights, two_weights = {}, {}
    reference, one_pass = run(False), run(dtype == torch.bfloat16, one_weights)
    monkeypatch.setattr(bmip_module, "attention_with_lse", lambda q, k, v: None)  # no kernel: two passes
    two_pass = run(dtype == torch.bfloat16, two_weights)
    if dtype == torch.float32:
        torch.testing.assert_close(one_pass, two_pass, rtol=1e-5, atol=1e-5)
        assert sorted(one_weights) == sorted(two_weights) and len(one_weights) == 8 + 7  # vision + text layers
        for key in one_weights:
            torch.testing.assert_close(torch.stack(one_weights[key]), torch.stack(two_weights[key]),
                                       rtol=1e-5, atol=1e-6)
    else:  # bf16 autocast: the one-pass path rounds no worse than the two-pass one
        one_err, two_err = ((y - reference).abs().max().item() for y in (one_pass, two_pass))
        assert 0 < one_err <= 2 * two_err + 0.02, (one_err, two_err)


def test_official_checkpoint_keys_map_to_ours(clip_model):
    torch.manual_seed(10)
    learner = BMIPPromptLearner(bmip_cfg(), CLASSNAMES, clip_model)
    ours = {f"prompt_learner.{k}": v.clone() for k, v in learner.state_dict().items()}
    official = {k: v for k, v in ours.items() if "_gates." not in k}
    for j in range(8):
        official[f"image_encoder.transformer.resblocks.{j + 1}.learnable_linear1.weight"] = \
            learner.vision_gates.weight[j].reshape(1, 1).clone()
        official[f"image_encoder.transformer.resblocks.{j + 1}.learnable_linear1.bias"] = \
            learner.vision_gates.bias[j].reshape(1).clone()
        official[f"image_encoder.transformer.resblocks.{j + 1}.learnable_linear2.weight"] = torch.zeros(1, 1)
    for j in range(7):
        official[f"text_encoder.transformer.resblocks.{j + 1}.learnable_linear2.bias"] = \
            learner.text_gates.bias[j].reshape(1).clone()
        official[f"text_encoder.transformer.resblocks.{j + 1}.learnable_linear2.weight"] = torch.ones(1, 1)
    official["prompt_learner.ctx_v"] = torch.zeros(77, 128)
    official["prompt_learner.proj_v.weight"] = torch.zeros(64, 128)
    official["prompt_learner.exchange_layer_v.weight"] = torch.zeros(128, 256)
    trainer = BMIP.__new__(BMIP)
    trainer.prompt_learner = learner
    mapped = trainer.map_checkpoint_keys(official)
    assert set(mapped) == set(ours)
    for k in ours:
        torch.testing.assert_close(mapped[k], ours[k])


def test_bmip_parameter_count_at_vit_b16_shape(vit_b16_shaped):
    m = vit_b16_shaped
    learner = BMIPPromptLearner(bmip_cfg(), CLASSNAMES, m)
    n = sum(p.numel() for p in learner.parameters())
    expected = (2 * 512 + (512 * 768 + 768)          # ctx_t, proj_t (layer 0)
                + 8 * 2 * 512 + 8 * 2 * 768          # local text / vision prompts, layers 1..8
                + (512 * 768 + 768) + (768 * 512 + 512)  # shared text->vision, vision->text projections
                + 8 * 2 + 7)                         # vision gates (weight, bias), text gate biases
    assert n == expected == 1_203_223


def test_pytorch_gives_aliased_parameters_separate_storage_when_cast():
    """Why SHARED_VISUAL_PROMPT defaults to "copies": the official code's aliased
    Parameters stop sharing memory once the module is moved or cast (as .cuda() does)."""
    module = torch.nn.Module()
    module.ctx_v = torch.nn.Parameter(torch.randn(77, 8))
    module.compound_prompts_visual = torch.nn.ParameterList([module.ctx_v[:2, :] for _ in range(8)])
    assert len({p.data_ptr() for p in module.compound_prompts_visual}) == 1
    module.to("cpu")  # a no-op move keeps them aliased (the official code on a CPU)
    assert len({p.data_ptr() for p in module.compound_prompts_visual}) == 1
    module.double()  # a real conversion, like .to("cuda") or .half()
    assert len({p.data_ptr() for p in module.compound_prompts_visual}) == 8
    values = [p.detach() for p in module.compound_prompts_visual]
    assert all(torch.equal(v, values[0]) for v in values)  # same start, independent from now on


@pytest.mark.parametrize("key,value", [("AGGREGATION", "attn"), ("SHARED_VISUAL_PROMPT", "shared"),
                                       ("VISION_WEIGHT", "mean"), ("TEXT_WEIGHT", "row0"), ("PREC", "fp8")])
def test_bad_bmip_values_are_one_line_errors_naming_the_key(key, value):
    cfg = bmip_cfg(**{key: value})
    with pytest.raises(ValueError, match=rf"TRAINER\.BMIP\.{key} '{value}' is not one of"):
        BMIP.check_cfg(BMIP.__new__(BMIP), cfg)


def test_prompt_depth_beyond_the_backbone_is_refused(clip_model):
    with pytest.raises(ValueError, match=r"TRAINER\.BMIP\.PROMPT_DEPTH must be in \[1, 12\], got 13"):
        BMIPPromptLearner(bmip_cfg(PROMPT_DEPTH=13), CLASSNAMES, clip_model)


def test_no_prompt_tokens_evaluate_without_the_fused_read_out(clip_model):
    """N_CTX 0 (no prompts to read attention for) evaluates without calling the one-pass kernel
    on an empty key set (which aborts the whole process on a CPU)."""
    learner = BMIPPromptLearner(bmip_cfg(N_CTX=0), CLASSNAMES, clip_model)
    with torch.no_grad():
        logits = PromptedCLIP(clip_model, learner)(images(2, seed=3))
    assert logits.shape == (2, len(CLASSNAMES)) and torch.isfinite(logits).all()
