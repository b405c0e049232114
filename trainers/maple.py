"""MaPLe: multi-modal prompt learning (Khattak et al., CVPR 2023).

Language prompts are learned at layers 0..PROMPT_DEPTH-1; each layer's vision
prompts are a linear projection (text width -> vision width) of that layer's
language prompts, so the vision branch is coupled to the language branch.
"""
import copy

import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import ClipPromptTrainer, PromptSet
from .prompting import (
    ClassPromptTemplate,
    DeepPromptHook,
    init_text_context,
    normal_prompts,
    require_vit,
)


class MultiModalPromptLearner(nn.Module):
    """Parameter names are those of the official MaPLe checkpoints: ``ctx``,
    ``proj``, ``compound_prompts_text.{j}``, ``compound_prompt_projections.{j}``
    (j = 0..PROMPT_DEPTH-2, used at layer j+1)."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        mcfg = cfg.TRAINER.MAPLE
        if mcfg.PROMPT_DEPTH < 1:
            raise ValueError(f"TRAINER.MAPLE.PROMPT_DEPTH must be >= 1, got {mcfg.PROMPT_DEPTH}")
        n_layers = len(clip_model.visual.transformer.resblocks)
        if mcfg.PROMPT_DEPTH > n_layers:
            raise ValueError(f"TRAINER.MAPLE.PROMPT_DEPTH {mcfg.PROMPT_DEPTH} exceeds the {n_layers} layers "
                             f"of backbone {cfg.MODEL.BACKBONE.NAME}")
        d_text, d_vis = clip_model.text_width, clip_model.vision_width
        ctx, prompt_prefix, n_ctx = init_text_context(clip_model, mcfg.N_CTX, mcfg.CTX_INIT, rule="maple")
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of MaPLe context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        self.proj = nn.Linear(d_text, d_vis)
        depth = mcfg.PROMPT_DEPTH
        self.compound_prompts_text = normal_prompts(depth - 1, n_ctx, d_text)
        # As in the official code, all deep projections start as copies of one
        # randomly initialised layer (and then train independently).
        first = nn.Linear(d_text, d_vis)
        self.compound_prompt_projections = nn.ModuleList(copy.deepcopy(first) for _ in range(depth - 1))
        self.template = ClassPromptTemplate(clip_model, classnames, prompt_prefix, n_ctx)

    def forward(self):
        deep_text = list(self.compound_prompts_text)
        deep_vision = [proj(p) for proj, p in zip(self.compound_prompt_projections, deep_text)]
        return PromptSet(
            text_embeddings=self.template(self.ctx),
            eot_indices=self.template.eot_indices,
            text_length=self.template.text_length,
            text_hook=DeepPromptHook(deep_text, "text", self.template.context_start),
            vision_prompts=self.proj(self.ctx),
            vision_hook=DeepPromptHook(deep_vision, "vision"),
        )


@TRAINER_REGISTRY.register()
class MaPLe(ClipPromptTrainer):
    """Multi-modal prompt learning; checkpoints as the official ones
    (``MultiModalPromptLearner/model.pth.tar-N``, keys ``prompt_learner.*``)."""

    CFG_NODE = "MAPLE"
    MODEL_NAME = "MultiModalPromptLearner"
    PREFIXED_KEYS = True

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.MAPLE = CN()
        cfg.TRAINER.MAPLE.N_CTX = 2  # context tokens per layer
        cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # initialisation words (used when N_CTX <= 4)
        cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16, fp32, amp, bf16
        cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # layers with their own prompts (1 = shallow MaPLe)

    def build_prompt_learner(self, cfg, classnames, clip_model):
        require_vit(clip_model, "MaPLe", cfg.MODEL.BACKBONE.NAME)
        return MultiModalPromptLearner(cfg, classnames, clip_model)
