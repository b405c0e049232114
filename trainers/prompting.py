"""Prompting pieces shared by the methods: the class-prompt template with its
learnable context, and the per-layer hook that puts deep prompts into CLIP.

Deep-prompt semantics (those of the official MaPLe/IVLP/VPT code): layer 0's
prompts enter with the input (text: context tokens right after SOS; vision:
tokens appended after [CLS, patches]); for each layer ``1 <= i < depth`` the
hook overwrites the prompt positions with that layer's own prompts before the
block runs; from layer ``depth`` on, the prompt positions carry the previous
layer's outputs.
"""
from typing import Sequence

import torch
import torch.nn as nn

from .base import tokenize_prompts


def init_text_context(clip_model, n_ctx, ctx_init, rule="maple"):
    """Initial context vectors and the prompt prefix they stand for.

    ``rule="maple"`` (MaPLe, IVLP): with CTX_INIT and ``n_ctx <= 4`` the context
    is the embedding of CTX_INIT's first ``n_ctx`` tokens and the prefix is the
    whole CTX_INIT (so "a photo of a" with 2 contexts learns "a photo" and keeps
    "of a" fixed in the template); otherwise N(0, 0.02) and "X X ...".
    ``rule="coop"`` (CoOp, CoCoOp): with CTX_INIT, ``n_ctx`` becomes its number
    of words. Returns ``(ctx (n_ctx, D), prompt_prefix, n_ctx)``.
    """
    width = clip_model.text_width
    ctx_init = (ctx_init or "").replace("_", " ")
    use_init = bool(ctx_init) and (rule == "coop" or n_ctx <= 4)
    if use_init:
        tokenizer = clip_model.text_tokenizer
        n_tokens = len(tokenizer.encode(ctx_init))
        if rule == "coop":
            n_ctx = len(ctx_init.split(" "))
        if n_tokens < n_ctx or (rule == "coop" and n_tokens != n_ctx):
            # Otherwise some context would be initialised from end-of-text/padding
            # embeddings, or a word's extra BPE tokens would sit among the class tokens.
            raise ValueError(
                f"CTX_INIT {ctx_init!r} is {n_tokens} token(s) of this backbone's tokenizer for {n_ctx} "
                f"context vector(s); "
                "use words that are one token each, or change N_CTX"
            )
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenize_prompts([ctx_init], clip_model))
        start = tokenizer.prefix_length
        return embedding[0, start:start + n_ctx, :].clone(), ctx_init, n_ctx
    ctx = torch.empty(n_ctx, width)
    nn.init.normal_(ctx, std=0.02)
    return ctx, " ".join(["X"] * n_ctx), n_ctx


class ClassPromptTemplate(nn.Module):
    """The token embeddings of "``prefix`` ``class name``." for every class, with
    the ``n_ctx`` positions after the tokenizer's leading special tokens (OpenAI's SOS;
    none for SigLIP) left for learnable context; ``context_start`` is where they begin.

    Under a causal mask the sequences stop after the last end-of-text token of all
    classes (``text_length`` positions instead of CLIP's 77): no position up to an EOT
    sees what follows, so the text features are the same, and every prompt built per
    step (per image for CoCoOp) is 77 / text_length times smaller. A bidirectional
    text tower keeps the whole context. Buffers are derived from the class names and
    not checkpointed.
    """

    def __init__(self, clip_model, classnames, prompt_prefix, n_ctx):
        super().__init__()
        tokenizer = clip_model.text_tokenizer
        if n_ctx and len(tokenizer.encode(prompt_prefix)) < n_ctx:
            raise ValueError(f"the prompt prefix {prompt_prefix!r} is fewer than {n_ctx} tokens for this backbone's "
                             f"tokenizer: the learnable context would cover class-name tokens")
        names = [name.replace("_", " ") for name in classnames]
        tokens = tokenize_prompts([f"{prompt_prefix} {name}." for name in names], clip_model)
        self.text_length = clip_model.text_length_needed(tokens)
        tokens = tokens[:, :self.text_length]
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokens)
        start = self.context_start = tokenizer.prefix_length
        self.register_buffer("token_prefix", embedding[:, :start, :], persistent=False)
        self.register_buffer("token_suffix", embedding[:, start + n_ctx:, :], persistent=False)
        self.register_buffer("eot_indices", clip_model.pool_indices(tokens), persistent=False)
        self.n_cls, self.n_ctx = len(names), n_ctx
        self.tokenized_prompts = tokens

    def forward(self, ctx):
        """(n_ctx, D) shared or (n_cls, n_ctx, D) per-class context -> (n_cls, L, D)."""
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx.to(self.token_prefix.dtype), self.token_suffix], dim=1)

    def per_instance(self, ctx):
        """(B, n_ctx, D) instance-specific context -> (B * n_cls, L, D) prompts and
        their (B * n_cls,) EOT positions, image-major (rows b*n_cls .. (b+1)*n_cls-1)."""
        b = ctx.shape[0]
        ctx = ctx.to(self.token_prefix.dtype).unsqueeze(1).expand(-1, self.n_cls, -1, -1)
        prefix = self.token_prefix.unsqueeze(0).expand(b, -1, -1, -1)
        suffix = self.token_suffix.unsqueeze(0).expand(b, -1, -1, -1)
        prompts = torch.cat([prefix, ctx, suffix], dim=2).flatten(0, 1)
        return prompts, self.eot_indices.repeat(b)


class DeepPromptHook:
    """Per-layer hook replacing the prompt positions with layer-specific prompts.

    ``layer_prompts[j]`` (each (P, D)) is used at block ``j + 1``; blocks past
    the list keep what the previous block produced at those positions.
    ``where="text"`` puts them at positions ``start .. start + P - 1`` (right after
    the start token: the template's ``context_start``), ``"vision"`` at the last P
    positions (after [CLS, patches]).
    """

    def __init__(self, layer_prompts: Sequence[torch.Tensor], where: str, start: int = 1):
        if where not in ("text", "vision"):
            raise ValueError(f"DeepPromptHook: where must be 'text' or 'vision', got {where!r}")
        self.layer_prompts = list(layer_prompts)
        self.where = where
        self.start = start

    def __call__(self, i, x, block):
        if 1 <= i <= len(self.layer_prompts):
            x = splice_prompts(x, self.layer_prompts[i - 1], self.where, self.start)
        return block(x)


def splice_prompts(x, prompts, where, start=1):
    """Replace the prompt positions of ``x`` (N, L, D) by ``prompts`` ((P, D) or (N, P, D)):
    text positions ``start .. start + P - 1``, vision the last P.

    With gradients off (evaluation) the rows of ``x`` are overwritten in place, which the layer
    hooks may do since ``x`` is the previous block's fresh output; otherwise a new tensor is
    built (a concatenation, whose backward costs no copy).
    """
    p = prompts.shape[-2]
    if p == 0:
        return x
    if not torch.is_grad_enabled():
        target = x[:, start:start + p] if where == "text" else x[:, x.shape[1] - p:]
        target.copy_(prompts.expand_as(target))
        return x
    if prompts.dim() == 2:
        prompts = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)
    prompts = prompts.to(x.dtype)
    if where == "text":
        return torch.cat([x[:, :start], prompts, x[:, start + p:]], dim=1)
    return torch.cat([x[:, :-p], prompts], dim=1)


def normal_prompts(n_layers, n_tokens, width, std=0.02):
    """``n_layers`` learnable (n_tokens, width) prompts, N(0, std) initialised."""
    params = nn.ParameterList()
    for _ in range(n_layers):
        p = torch.empty(n_tokens, width)
        nn.init.normal_(p, std=std)
        params.append(nn.Parameter(p))
    return params


def require_vit(clip_model, trainer_name, backbone):
    """Deep prompts need a ViT image encoder: fail clearly on a ResNet."""
    if not clip_model.is_vit:
        raise ValueError(
            f"trainer {trainer_name} prompts the vision transformer and needs a ViT backbone; "
            f"MODEL.BACKBONE.NAME {backbone} is a ResNet"
        )
