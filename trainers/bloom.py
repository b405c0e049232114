"""Bloom: bilateral adaptive cross-modal fusion prompt learning (ACM MM 2024 submission).

Every prompted layer i in [START, END) owns a language prompt P_l (L x d_l) and a
vision prompt P_v (L x d_v). Two per-layer bottleneck projections translate them
into the other modality (Proj_{v->l}, Proj_{l->v}: Linear -> ReLU -> Linear
through MIDDLE_DIM), and a fusion function mixes each branch's own prompt with
the translated one. The default fusion is a learnable gate per layer and branch,
G in R^2, giving the convex combination softmax(G)[0] * own + softmax(G)[1] * translated.
The fused prompts replace the prompt tokens of layer i in each encoder.

There is no public code; the paper is the specification. Choices where the
paper is silent or ambiguous are listed in docs/METHODS.md ("Bloom").
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import ClipPromptTrainer, PromptSet
from .prompting import ClassPromptTemplate, DeepPromptHook, init_text_context, require_vit

FUSIONS = ("gate", "add", "concat", "routing")
DIRECTIONS = ("both", "v2l", "l2v")
# Fusions whose per-layer mixing weights are learned (and therefore plotted).
GATED_FUSIONS = ("gate", "routing")


def check_bloom_cfg(bcfg):
    """Validate the backbone-independent values of ``cfg.TRAINER.BLOOM``; one-line ValueErrors."""
    def require(condition, key, value, expected):
        if not condition:
            raise ValueError(f"TRAINER.BLOOM.{key} must be {expected}, got {value!r}")

    def is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)

    require(is_int(bcfg.N_CTX) and bcfg.N_CTX >= 1, "N_CTX", bcfg.N_CTX, "an integer >= 1")
    require(is_int(bcfg.START) and bcfg.START >= 0, "START", bcfg.START, "an integer >= 0")
    require(is_int(bcfg.END) and bcfg.END > bcfg.START, "END", bcfg.END,
            f"an integer > TRAINER.BLOOM.START ({bcfg.START})")
    require(is_int(bcfg.MIDDLE_DIM) and bcfg.MIDDLE_DIM >= 1, "MIDDLE_DIM", bcfg.MIDDLE_DIM, "an integer >= 1")
    require(isinstance(bcfg.INIT_STD, (int, float)) and bcfg.INIT_STD >= 0, "INIT_STD", bcfg.INIT_STD,
            "a number >= 0")
    require(bcfg.FUSION in FUSIONS, "FUSION", bcfg.FUSION, f"one of {', '.join(FUSIONS)}")
    require(bcfg.DIRECTION in DIRECTIONS, "DIRECTION", bcfg.DIRECTION, f"one of {', '.join(DIRECTIONS)}")
    require(isinstance(bcfg.GUMBEL_TAU, (int, float)) and bcfg.GUMBEL_TAU > 0, "GUMBEL_TAU", bcfg.GUMBEL_TAU,
            "a number > 0")


class LayerwiseBottleneck(nn.Module):
    """An independent ``Linear(d_in, d_mid) -> ReLU -> Linear(d_mid, d_out)`` per layer.

    The weights of all layers are stacked, so the projections of every layer run as
    two batched matrix products. Layer ``j`` equals ``nn.Linear`` layers with weights
    ``down_weight[j]``, ``down_bias[j]`` and ``up_weight[j]``, ``up_bias[j]``, and is
    initialised the way ``nn.Linear`` initialises itself.
    """

    def __init__(self, n_layers, d_in, d_mid, d_out):
        super().__init__()
        self.down_weight = nn.Parameter(self._uniform(n_layers, d_mid, d_in, fan_in=d_in))
        self.down_bias = nn.Parameter(self._uniform(n_layers, d_mid, fan_in=d_in))
        self.up_weight = nn.Parameter(self._uniform(n_layers, d_out, d_mid, fan_in=d_mid))
        self.up_bias = nn.Parameter(self._uniform(n_layers, d_out, fan_in=d_mid))

    @staticmethod
    def _uniform(*shape, fan_in):
        # nn.Linear's default (kaiming_uniform with a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        # for the weight and the bias alike.
        bound = 1.0 / math.sqrt(fan_in)
        return torch.empty(*shape).uniform_(-bound, bound)

    def forward(self, x):
        """(n_layers, T, d_in) -> (n_layers, T, d_out), layer j through its own projection."""
        hidden = torch.baddbmm(self.down_bias.unsqueeze(1), x, self.down_weight.transpose(1, 2)).relu()
        return torch.baddbmm(self.up_bias.unsqueeze(1), hidden, self.up_weight.transpose(1, 2))


def insert_prompts(x, prompts, where):
    """Insert ``prompts`` (P, D) into every sequence of ``x`` (N, L, D): after SOS
    (``where="text"``) or after the last token (``"vision"``)."""
    prompts = prompts.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
    if where == "text":
        return torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1)
    return torch.cat([x, prompts], dim=1)


class LateInsertionHook:
    """Deep prompts that first enter at block ``start`` > 0.

    Blocks before ``start`` run the unprompted sequence; ``layer_prompts[0]`` is
    inserted right before block ``start`` (text: after SOS; vision: after the
    patches); blocks ``start + 1 .. start + len - 1`` get their own prompts at those
    positions (DeepPromptHook semantics) and later blocks carry the previous outputs.
    """

    def __init__(self, layer_prompts, start, where):
        self.first = layer_prompts[0]
        self.start = start
        self.where = where
        self.deeper = DeepPromptHook(list(layer_prompts[1:]), where)

    def __call__(self, i, x, block):
        if i < self.start:
            return block(x)
        if i == self.start:
            return block(insert_prompts(x, self.first, self.where))
        return self.deeper(i - self.start, x, block)


class BloomPromptLearner(nn.Module):
    """All of Bloom's trainable tensors, stacked over the prompted layers
    (row j belongs to layer START + j):

    - ``text_prompts`` (layers, N_CTX, d_l): P_l; row 0 is the CTX_INIT context when START is 0.
    - ``vision_prompts`` (layers, N_CTX, d_v): P_v.
    - ``proj_v2l.*`` / ``proj_l2v.*``: the per-layer bottlenecks, only for a branch that
      receives the other modality (DIRECTION).
    - ``gate_text`` / ``gate_vision`` (layers, 2): G_l and G_v (FUSION gate or routing,
      receiving branches only); column 0 weighs the branch's own prompt.
    """

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        bcfg = cfg.TRAINER.BLOOM
        check_bloom_cfg(bcfg)
        for encoder, blocks in (("text", clip_model.transformer.resblocks),
                                ("image", clip_model.visual.transformer.resblocks)):
            if bcfg.END > len(blocks):
                raise ValueError(f"TRAINER.BLOOM.END {bcfg.END} exceeds the {len(blocks)} layers of the {encoder} "
                                 f"encoder of backbone {cfg.MODEL.BACKBONE.NAME}")
        self.fusion, self.direction = bcfg.FUSION, bcfg.DIRECTION
        self.start, self.gumbel_tau = bcfg.START, float(bcfg.GUMBEL_TAU)
        n_layers, n_ctx, d_mid = bcfg.END - bcfg.START, bcfg.N_CTX, bcfg.MIDDLE_DIM
        d_text, d_vis = clip_model.text_width, clip_model.vision_width
        self.text_receives = self.direction in ("both", "v2l")
        self.vision_receives = self.direction in ("both", "l2v")

        text_prompts = torch.empty(n_layers, n_ctx, d_text).normal_(std=bcfg.INIT_STD)
        ctx, prompt_prefix, _ = init_text_context(clip_model, n_ctx, bcfg.CTX_INIT, rule="maple")
        if self.start == 0:
            text_prompts[0] = ctx
        self.text_prompts = nn.Parameter(text_prompts)
        self.vision_prompts = nn.Parameter(torch.empty(n_layers, n_ctx, d_vis).normal_(std=bcfg.INIT_STD))
        if self.text_receives:
            self.proj_v2l = LayerwiseBottleneck(n_layers, d_vis, d_mid, d_text)
        if self.vision_receives:
            self.proj_l2v = LayerwiseBottleneck(n_layers, d_text, d_mid, d_vis)
        if self.fusion in GATED_FUSIONS:
            # Equal logits: softmax(G) starts as the uniform (0.5, 0.5) mixture.
            if self.text_receives:
                self.gate_text = nn.Parameter(torch.zeros(n_layers, 2))
            if self.vision_receives:
                self.gate_vision = nn.Parameter(torch.zeros(n_layers, 2))

        widen = self.fusion == "concat"
        self.n_text_tokens = 2 * n_ctx if widen and self.text_receives else n_ctx
        self.n_vision_tokens = 2 * n_ctx if widen and self.vision_receives else n_ctx
        if self.start == 0:
            # Positions 1..n_text_tokens take the fused layer-0 prompts; with concat the
            # translated tokens get placeholders in front of CTX_INIT, so the words after
            # the first N_CTX ("of a" for "a photo of a", N_CTX 2) stay fixed as in MaPLe.
            extra = self.n_text_tokens - n_ctx
            template_prefix = " ".join(["X"] * extra + [prompt_prefix])
            self.template = ClassPromptTemplate(clip_model, classnames, template_prefix, self.n_text_tokens)
        else:
            # Layers before START see the hand-written prompt "CTX_INIT <class>." unprompted.
            fixed = (bcfg.CTX_INIT or "").replace("_", " ").strip()
            self.template = ClassPromptTemplate(clip_model, classnames, fixed, 0)

        print("Bloom design: bilateral adaptive cross-modal fusion prompt learning")
        print(f"Prompted layers [{bcfg.START}, {bcfg.END}), {n_ctx} token(s) per branch, middle dim {d_mid}, "
              f"fusion {self.fusion}, direction {self.direction}")
        if self.start == 0:
            print(f'Initial text context: "{prompt_prefix}"')

    # ------------------------------------------------------------------ gates
    def gate_weights(self, logits):
        """Mixing weights (layers, 2) from gate logits: softmax for ``gate``; for
        ``routing`` a straight-through Gumbel-softmax sample while training (one-hot
        forward, soft gradient) and the one-hot argmax of G in eval mode."""
        if self.fusion == "gate":
            return logits.softmax(dim=-1)
        if self.training:
            return F.gumbel_softmax(logits, tau=self.gumbel_tau, hard=True, dim=-1)
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)

    def gate_probabilities(self):
        """softmax(G) per prompted layer for each gated branch: {"text"|"vision": (layers, 2)}."""
        gates = {"text": getattr(self, "gate_text", None), "vision": getattr(self, "gate_vision", None)}
        return {branch: g.detach().float().softmax(dim=-1) for branch, g in gates.items() if g is not None}

    # ----------------------------------------------------------------- fusion
    def fuse(self, own, translated, gate):
        """M = F(own, translated) for all layers at once; (layers, T, d) each."""
        if self.fusion == "add":
            return own + translated
        if self.fusion == "concat":
            return torch.cat([own, translated], dim=1)
        weights = self.gate_weights(gate).to(own.dtype)
        return weights[:, 0, None, None] * own + weights[:, 1, None, None] * translated

    def fused_prompts(self):
        """(M_l (layers, T_l, d_l), M_v (layers, T_v, d_v)): the prompts each layer receives."""
        text, vision = self.text_prompts, self.vision_prompts
        fused_text = self.fuse(text, self.proj_v2l(vision), getattr(self, "gate_text", None)) \
            if self.text_receives else text
        fused_vision = self.fuse(vision, self.proj_l2v(text), getattr(self, "gate_vision", None)) \
            if self.vision_receives else vision
        return fused_text, fused_vision

    def forward(self):
        fused_text, fused_vision = self.fused_prompts()
        if self.start == 0:
            return PromptSet(
                text_embeddings=self.template(fused_text[0]),
                eot_indices=self.template.eot_indices,
                text_length=self.template.text_length,
                text_hook=DeepPromptHook(list(fused_text[1:]), "text"),
                vision_prompts=fused_vision[0],
                vision_hook=DeepPromptHook(list(fused_vision[1:]), "vision"),
            )
        no_context = fused_text.new_zeros(0, fused_text.shape[-1])
        return PromptSet(
            text_embeddings=self.template(no_context),
            # the inserted tokens push each end-of-text token back by their number
            eot_indices=self.template.eot_indices + self.n_text_tokens,
            text_length=self.template.text_length + self.n_text_tokens,
            text_hook=LateInsertionHook(fused_text, self.start, "text"),
            vision_hook=LateInsertionHook(fused_vision, self.start, "vision"),
        )


@TRAINER_REGISTRY.register()
class Bloom(ClipPromptTrainer):
    """Bilateral adaptive cross-modal fusion prompt learning. No official code
    exists: checkpoints are ``prompt_learner/model.pth.tar-N`` with the prompt
    learner's own keys (``text_prompts``, ``vision_prompts``, ``proj_v2l.*``,
    ``proj_l2v.*``, ``gate_text``, ``gate_vision``)."""

    CFG_NODE = "BLOOM"

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.BLOOM = CN()
        cfg.TRAINER.BLOOM.N_CTX = 2  # prompt tokens per layer and branch (L)
        cfg.TRAINER.BLOOM.CTX_INIT = "a photo of a"  # layer-0 language prompt words (used when N_CTX <= 4)
        cfg.TRAINER.BLOOM.PREC = "fp16"  # fp16, fp32, amp, bf16
        cfg.TRAINER.BLOOM.START = 0  # first prompted layer (0-based; the paper's [a, b) is [a-1, b-1) here)
        cfg.TRAINER.BLOOM.END = 12  # one past the last prompted layer
        cfg.TRAINER.BLOOM.MIDDLE_DIM = 64  # bottleneck width d_m of the projections
        cfg.TRAINER.BLOOM.INIT_STD = 0.2  # std of the normal init of the prompts (paper: N(0, 0.2))
        cfg.TRAINER.BLOOM.FUSION = "gate"  # gate, add, concat, routing
        cfg.TRAINER.BLOOM.DIRECTION = "both"  # both, v2l (only language receives), l2v (only vision receives)
        cfg.TRAINER.BLOOM.GUMBEL_TAU = 1.0  # temperature of the routing fusion's Gumbel-softmax

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_bloom_cfg(cfg.TRAINER.BLOOM)

    def build_prompt_learner(self, cfg, classnames, clip_model):
        require_vit(clip_model, "Bloom", cfg.MODEL.BACKBONE.NAME)
        return BloomPromptLearner(cfg, classnames, clip_model)
