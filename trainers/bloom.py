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
# per_layer: a bottleneck pair at every prompted layer (the paper's text); maple_derived: MaPLe's
# layer-0 linear coupling, bottleneck pairs from layer 1 on (the layout whose count is the paper's
# 2.24M). See docs/METHODS.md.
LAYOUTS = ("per_layer", "maple_derived")
# How the paper's interval [a, b) maps to our 0-based blocks: zero_based = blocks a..b-1 (MaPLe's
# block indices; the widest interval [1, 12) then reaches the last layer), one_based = the paper's
# a-th to (b-1)-th layer counted from 1, i.e. blocks a-1..b-2.
INTERVAL_READINGS = ("zero_based", "one_based")
# paper: every prompt N(0, INIT_STD), projections as nn.Linear; intact: the projections' expansion
# layers start at zero (translated prompts are 0 at step 0) and the fused layer-0 language prompt
# equals the CTX_INIT embedding at step 0.
INIT_MODES = ("paper", "intact")
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
    require(bcfg.LAYOUT in LAYOUTS, "LAYOUT", bcfg.LAYOUT, f"one of {', '.join(LAYOUTS)}")
    require(bcfg.INTERVAL_READING in INTERVAL_READINGS, "INTERVAL_READING", bcfg.INTERVAL_READING,
            f"one of {', '.join(INTERVAL_READINGS)}")
    require(bcfg.INIT_MODE in INIT_MODES, "INIT_MODE", bcfg.INIT_MODE, f"one of {', '.join(INIT_MODES)}")
    interval = tuple(bcfg.INTERVAL)
    require(interval == () or (len(interval) == 2 and all(is_int(v) for v in interval)), "INTERVAL",
            list(interval), "empty (use START/END) or [a, b] in the paper's notation")
    start, end = prompted_blocks(bcfg)
    require(start >= 0, "INTERVAL" if interval else "START", list(interval) if interval else bcfg.START,
            "a range of layers that starts at block 0 or later")
    require(end > start, "INTERVAL" if interval else "END", list(interval) if interval else bcfg.END,
            f"a range with an end > its start (block {start})")
    if bcfg.LAYOUT == "maple_derived":
        require(start <= 1, "LAYOUT", bcfg.LAYOUT, f"used with a range that starts at block 0 or 1 (layer 0 is "
                f"MaPLe's coupling; Bloom fuses from block 1), but the prompted blocks start at {start}")
        require(bcfg.FUSION != "concat", "LAYOUT", bcfg.LAYOUT, "per_layer with FUSION concat (the layer-0 "
                "coupling has N_CTX tokens, concat 2 x N_CTX)")


def prompted_blocks(bcfg):
    """The prompted 0-based blocks ``[start, end)``: ``INTERVAL`` (the paper's ``[a, b)``) read
    with ``INTERVAL_READING`` when given, else ``START``, ``END``."""
    interval = tuple(bcfg.INTERVAL)
    if len(interval) != 2:
        return bcfg.START, bcfg.END
    a, b = interval
    return (a, b) if bcfg.INTERVAL_READING == "zero_based" else (a - 1, b - 1)


class LayerwiseBottleneck(nn.Module):
    """An independent ``Linear(d_in, d_mid) -> ReLU -> Linear(d_mid, d_out)`` per layer.

    The weights of all layers are stacked, so the projections of every layer run as
    two batched matrix products. Layer ``j`` equals ``nn.Linear`` layers with weights
    ``down_weight[j]``, ``down_bias[j]`` and ``up_weight[j]``, ``up_bias[j]``, and is
    initialised the way ``nn.Linear`` initialises itself.
    """

    def __init__(self, n_layers, d_in, d_mid, d_out, zero_expansion=False):
        super().__init__()
        self.down_weight = nn.Parameter(self._uniform(n_layers, d_mid, d_in, fan_in=d_in))
        self.down_bias = nn.Parameter(self._uniform(n_layers, d_mid, fan_in=d_in))
        self.up_weight = nn.Parameter(self._uniform(n_layers, d_out, d_mid, fan_in=d_mid))
        self.up_bias = nn.Parameter(self._uniform(n_layers, d_out, fan_in=d_mid))
        if zero_expansion:  # the output starts at 0 (the down-projection learns once up has moved)
            with torch.no_grad():
                self.up_weight.zero_()
                self.up_bias.zero_()

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


def insert_prompts(x, prompts, where, start=1):
    """Insert ``prompts`` (P, D) into every sequence of ``x`` (N, L, D): after the ``start``
    leading special tokens (``where="text"``: after SOS) or after the last token (``"vision"``)."""
    prompts = prompts.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
    if where == "text":
        return torch.cat([x[:, :start], prompts, x[:, start:]], dim=1)
    return torch.cat([x, prompts], dim=1)


class LateInsertionHook:
    """Deep prompts that first enter at block ``start`` > 0.

    Blocks before ``start`` run the unprompted sequence; ``layer_prompts[0]`` is
    inserted right before block ``start`` (text: after SOS; vision: after the
    patches); blocks ``start + 1 .. start + len - 1`` get their own prompts at those
    positions (DeepPromptHook semantics) and later blocks carry the previous outputs.
    """

    def __init__(self, layer_prompts, start, where, text_start=1):
        self.first = layer_prompts[0]
        self.start = start
        self.where = where
        self.text_start = text_start
        self.deeper = DeepPromptHook(list(layer_prompts[1:]), where, text_start)

    def __call__(self, i, x, block):
        if i < self.start:
            return block(x)
        if i == self.start:
            return block(insert_prompts(x, self.first, self.where, self.text_start))
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
        start, end = prompted_blocks(bcfg)
        bound_key = "INTERVAL" if tuple(bcfg.INTERVAL) else "END"
        for encoder, blocks in (("text", clip_model.transformer.resblocks),
                                ("image", clip_model.visual.transformer.resblocks)):
            if end > len(blocks):
                value = list(bcfg.INTERVAL) if bound_key == "INTERVAL" else end
                raise ValueError(f"TRAINER.BLOOM.{bound_key} {value} exceeds the {len(blocks)} layers of the {encoder} "
                                 f"encoder of backbone {cfg.MODEL.BACKBONE.NAME}")
        self.layout = bcfg.LAYOUT
        maple = self.layout == "maple_derived"
        if maple:
            if end < 2:
                raise ValueError("TRAINER.BLOOM.LAYOUT maple_derived needs at least blocks 0 and 1 (an END >= 2): "
                                 "with block 0 alone it is MaPLe at depth 1")
            start = 0  # block 0 is MaPLe's coupling whether the interval starts at 0 or 1
        self.fusion, self.direction = bcfg.FUSION, bcfg.DIRECTION
        self.start, self.gumbel_tau = start, float(bcfg.GUMBEL_TAU)
        # text prompts at blocks [start, end); with maple_derived the fused layers (vision prompts,
        # bottlenecks, gates) are blocks 1..end-1 and block 0 is the linear coupling
        n_layers, n_ctx, d_mid = end - start, bcfg.N_CTX, bcfg.MIDDLE_DIM
        n_fused = n_layers - 1 if maple else n_layers
        d_text, d_vis = clip_model.text_width, clip_model.vision_width
        self.text_receives = self.direction in ("both", "v2l")
        self.vision_receives = self.direction in ("both", "l2v")
        intact = bcfg.INIT_MODE == "intact"

        text_prompts = torch.empty(n_layers, n_ctx, d_text).normal_(std=bcfg.INIT_STD)
        ctx, prompt_prefix, _ = init_text_context(clip_model, n_ctx, bcfg.CTX_INIT, rule="maple")
        if self.start == 0:
            text_prompts[0] = ctx
            if intact and not maple and self.fusion == "gate" and self.text_receives:
                # softmax(G)[0] * own + softmax(G)[1] * 0 must equal the CTX_INIT embedding at step 0
                # (G starts at 0: see the gates below)
                text_prompts[0] = ctx / torch.zeros(2).softmax(dim=-1)[0]
        self.text_prompts = nn.Parameter(text_prompts)
        self.vision_prompts = nn.Parameter(torch.empty(n_fused, n_ctx, d_vis).normal_(std=bcfg.INIT_STD))
        if self.text_receives:
            self.proj_v2l = LayerwiseBottleneck(n_fused, d_vis, d_mid, d_text, zero_expansion=intact)
        if self.vision_receives:
            self.proj_l2v = LayerwiseBottleneck(n_fused, d_text, d_mid, d_vis, zero_expansion=intact)
        if self.fusion in GATED_FUSIONS:
            # Equal logits: softmax(G) starts as the uniform (0.5, 0.5) mixture.
            if self.text_receives:
                self.gate_text = nn.Parameter(torch.zeros(n_fused, 2))
            if self.vision_receives:
                self.gate_vision = nn.Parameter(torch.zeros(n_fused, 2))
        if maple:
            # MaPLe's layer-0 coupling (its name there: prompt_learner.proj): vision from language
            self.proj = nn.Linear(d_text, d_vis)

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
        fused_from = 1 if maple else start
        print(f"Layout {self.layout}: prompted blocks [{start}, {end}) (0-based)"
              + (", block 0 coupled as in MaPLe (Linear language -> vision)" if maple else "")
              + f", Bloom fusion at blocks [{fused_from}, {end}); {n_ctx} token(s) per branch, middle dim {d_mid}, "
              f"fusion {self.fusion}, direction {self.direction}, init {bcfg.INIT_MODE}")
        if self.start == 0:
            print(f'Initial text context: "{prompt_prefix}"')

    @property
    def first_fused_layer(self):
        """The block that row 0 of the bottlenecks, gates and vision prompts belongs to."""
        return 1 if self.layout == "maple_derived" else self.start

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
        """(M_l (layers, T_l, d_l), M_v (layers, T_v, d_v)): the prompts each layer receives.

        With the maple_derived layout, layer 0 receives the language context itself and its
        linear projection (MaPLe), and the fusion starts at layer 1."""
        text, vision = self.text_prompts, self.vision_prompts
        maple = self.layout == "maple_derived"
        deep_text = text[1:] if maple else text
        fused_text = self.fuse(deep_text, self.proj_v2l(vision), getattr(self, "gate_text", None)) \
            if self.text_receives else deep_text
        fused_vision = self.fuse(vision, self.proj_l2v(deep_text), getattr(self, "gate_vision", None)) \
            if self.vision_receives else vision
        if maple:
            fused_text = torch.cat([text[:1], fused_text])
            fused_vision = torch.cat([self.proj(text[0]).unsqueeze(0), fused_vision])
        return fused_text, fused_vision

    def forward(self):
        fused_text, fused_vision = self.fused_prompts()
        if self.start == 0:
            return PromptSet(
                text_embeddings=self.template(fused_text[0]),
                eot_indices=self.template.eot_indices,
                text_length=self.template.text_length,
                text_hook=DeepPromptHook(list(fused_text[1:]), "text", self.template.context_start),
                vision_prompts=fused_vision[0],
                vision_hook=DeepPromptHook(list(fused_vision[1:]), "vision"),
            )
        no_context = fused_text.new_zeros(0, fused_text.shape[-1])
        return PromptSet(
            text_embeddings=self.template(no_context),
            # the inserted tokens push each end-of-text token back by their number
            eot_indices=self.template.eot_indices + self.n_text_tokens,
            text_length=self.template.text_length + self.n_text_tokens,
            text_hook=LateInsertionHook(fused_text, self.start, "text", self.template.context_start),
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
        cfg.TRAINER.BLOOM.START = 0  # first prompted block (0-based)
        cfg.TRAINER.BLOOM.END = 12  # one past the last prompted block
        # The paper's interval [a, b) instead of START/END (e.g. [1, 12)), read as INTERVAL_READING:
        # zero_based (blocks a..b-1, MaPLe's indices) or one_based (the a-th..(b-1)-th layer from 1)
        cfg.TRAINER.BLOOM.INTERVAL = ()
        cfg.TRAINER.BLOOM.INTERVAL_READING = "zero_based"
        # per_layer (a bottleneck pair at every prompted layer, the paper's text) or maple_derived
        # (MaPLe's layer-0 coupling, bottlenecks from layer 1: the paper's 2.24M parameters)
        cfg.TRAINER.BLOOM.LAYOUT = "per_layer"
        cfg.TRAINER.BLOOM.INIT_MODE = "paper"  # paper, or intact (layer-0 context intact at step 0)
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
