"""CoOp's prompt learner and the shared prompted-CLIP model on the tiny CLIP."""
import pytest
import torch
import torch.nn.functional as F

import clip
import trainers
from dassl.config import get_cfg_default
from tests.helpers.tiny_clip import make_tiny_clip_state_dict
from trainers.base import PromptedCLIP
from trainers.coop import CoOpPromptLearner, class_token_order
from trainers.zsclip import FixedPrompts

CLASSNAMES = ["annual crop", "forest", "herbaceous_vegetation", "sea or lake", "a b c d e f"]


@pytest.fixture(scope="module")
def clip_model():
    torch.manual_seed(0)
    return clip.build_model(make_tiny_clip_state_dict(kind="vit", seed=0))


def coop_cfg(**coop):
    cfg = get_cfg_default()
    trainers.add_trainer_configs(cfg)
    cfg.TRAINER.COOP.N_CTX = 4
    for k, v in coop.items():
        cfg.TRAINER.COOP[k] = v
    return cfg


def images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g)


def test_zero_shot_logits_equal_plain_clip(clip_model):
    texts = [f"a photo of a {c}." for c in CLASSNAMES]
    model = PromptedCLIP(clip_model, FixedPrompts(texts, clip_model)).eval()
    x = images()
    with torch.no_grad():
        img = F.normalize(clip_model.encode_image(x), dim=-1)
        txt = F.normalize(clip_model.encode_text(clip.tokenize(texts)), dim=-1)
        expected = clip_model.logit_scale.exp() * img @ txt.t()
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_end_position_places_context_after_sos(clip_model):
    torch.manual_seed(1)
    pl = CoOpPromptLearner(coop_cfg(), CLASSNAMES, clip_model)
    ps = pl()
    n_cls, n_ctx = len(CLASSNAMES), 4
    tokens = clip.tokenize([f"X X X X {c.replace('_', ' ')}." for c in CLASSNAMES])
    length = int(tokens.argmax(-1).max()) + 1  # the prompts stop after the last end-of-text token
    assert ps.text_embeddings.shape == (n_cls, length, clip_model.text_width) and ps.text_length == length
    torch.testing.assert_close(ps.text_embeddings[:, 1:1 + n_ctx], pl.ctx.unsqueeze(0).expand(n_cls, -1, -1))
    emb = clip_model.token_embedding(tokens)
    torch.testing.assert_close(ps.text_embeddings[:, :1], emb[:, :1])
    torch.testing.assert_close(ps.text_embeddings[:, 1 + n_ctx:], emb[:, 1 + n_ctx:length])
    assert torch.equal(ps.eot_indices, tokens.argmax(-1))


@pytest.mark.parametrize("position", ["middle", "front"])
def test_middle_and_front_match_per_class_concatenation(clip_model, position):
    """The vectorised gather equals the official per-class concatenation rule."""
    torch.manual_seed(2)
    pl = CoOpPromptLearner(coop_cfg(CSC=True, CLASS_TOKEN_POSITION=position), CLASSNAMES, clip_model)
    got = pl().text_embeddings
    tok = clip.simple_tokenizer.SimpleTokenizer()
    rows = []
    for i, name in enumerate(CLASSNAMES):
        n = len(tok.encode(name.replace("_", " ")))
        pre, ctx, suf = pl.token_prefix[i:i + 1], pl.ctx[i:i + 1], pl.token_suffix[i:i + 1]
        cls_tok, rest = suf[:, :n], suf[:, n:]
        if position == "middle":
            parts = [pre, ctx[:, :2], cls_tok, ctx[:, 2:], rest]
        else:
            parts = [pre, cls_tok, ctx, rest]
        rows.append(torch.cat(parts, dim=1))
    torch.testing.assert_close(got, torch.cat(rows))


def test_class_token_order_rejects_unknown_position():
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION 'left'"):
        class_token_order(4, [1, 2], 10, "left")


def test_ctx_init_uses_word_embeddings(clip_model):
    pl = CoOpPromptLearner(coop_cfg(CTX_INIT="a photo of a"), CLASSNAMES, clip_model)
    emb = clip_model.token_embedding(clip.tokenize(["a photo of a"]))[0, 1:5]
    torch.testing.assert_close(pl.ctx.data, emb)
    assert pl.n_ctx == 4


def test_training_changes_only_context_and_overfits(clip_model):
    torch.manual_seed(3)
    pl = CoOpPromptLearner(coop_cfg(), CLASSNAMES, clip_model)
    model = PromptedCLIP(clip_model, pl)
    for p in clip_model.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in clip_model.state_dict().items()}
    ctx0 = pl.ctx.detach().clone()
    x, y = images(5, seed=4), torch.arange(5)
    opt = torch.optim.Adam(pl.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    with torch.no_grad():
        assert torch.equal(model(x).argmax(-1), y)  # the fixed batch is fitted
    assert not torch.equal(pl.ctx, ctx0)
    for k, v in clip_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["prompt_learner.ctx"]


def test_cached_text_features_give_identical_logits(clip_model):
    torch.manual_seed(5)
    model = PromptedCLIP(clip_model, CoOpPromptLearner(coop_cfg(), CLASSNAMES, clip_model)).eval()
    x = images(7, seed=6)
    with torch.no_grad():
        plain = torch.cat([model(x[:3]), model(x[3:])])
        with model.cached_text_features():
            assert model._cache is not None
            cached = torch.cat([model(x[:3]), model(x[3:])])
    assert model._cache is None
    assert torch.equal(plain, cached)


def test_state_dict_holds_only_the_context(clip_model):
    pl = CoOpPromptLearner(coop_cfg(), CLASSNAMES, clip_model)
    assert list(pl.state_dict()) == ["ctx"]
