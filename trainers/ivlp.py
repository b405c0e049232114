"""Independent deep prompts: IVLP (vision + language, no coupling), deep
language prompting (IVLP with vision depth 0) and VPT (deep vision prompts with
the fixed "a photo of a {}." text prompt), as in the MaPLe repository.

The official code keeps the deep prompts inside CLIP's blocks
(``*.resblocks.{i}.VPT_shallow``) and the layer-0 vision prompt in
``image_encoder.VPT``; here they live in the prompt learner and enter through
the per-layer hook. :func:`map_official_ivlp_keys` translates the official
names so released weights load.
"""
import re

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
from .zsclip import FixedPrompts


def check_depth(node, key, value, n_layers, minimum=0):
    """Validate a prompt depth against the backbone's number of layers."""
    if not minimum <= value <= n_layers:
        raise ValueError(f"TRAINER.{node}.{key} must be in [{minimum}, {n_layers}], got {value}")


class VisionDeepPrompts(nn.Module):
    """Learnable vision prompts: ``vision_ctx`` appended at the input, and one
    set per layer 1..depth-1 in ``deep_vision_prompts``."""

    def __init__(self, n_ctx, depth, width):
        super().__init__()
        self.vision_ctx = normal_prompts(1, n_ctx, width)[0]
        self.deep_vision_prompts = normal_prompts(depth - 1, n_ctx, width)

    def forward(self):
        return self.vision_ctx, DeepPromptHook(list(self.deep_vision_prompts), "vision")


class IndependentVLPromptLearner(nn.Module):
    """Language context ``ctx`` and ``deep_text_prompts`` (layers 1..text depth-1),
    plus independent vision prompts when the vision depth is >= 1."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        icfg = cfg.TRAINER.IVLP
        n_layers = len(clip_model.transformer.resblocks)
        check_depth("IVLP", "PROMPT_DEPTH_TEXT", icfg.PROMPT_DEPTH_TEXT, n_layers, minimum=1)
        check_depth("IVLP", "PROMPT_DEPTH_VISION", icfg.PROMPT_DEPTH_VISION,
                    len(clip_model.visual.transformer.resblocks))
        ctx, prompt_prefix, n_ctx = init_text_context(clip_model, icfg.N_CTX_TEXT, icfg.CTX_INIT, rule="maple")
        print("Independent V-L design")
        print(f'Initial text context: "{prompt_prefix}"')
        print(f"Number of context words (tokens) for Language prompting: {n_ctx}")
        print(f"Number of context words (tokens) for Vision prompting: {icfg.N_CTX_VISION}")
        self.ctx = nn.Parameter(ctx)
        self.deep_text_prompts = normal_prompts(icfg.PROMPT_DEPTH_TEXT - 1, n_ctx, clip_model.text_width)
        self.vision = None
        if icfg.PROMPT_DEPTH_VISION >= 1 and icfg.N_CTX_VISION >= 1:
            self.vision = VisionDeepPrompts(icfg.N_CTX_VISION, icfg.PROMPT_DEPTH_VISION, clip_model.vision_width)
        self.template = ClassPromptTemplate(clip_model, classnames, prompt_prefix, n_ctx)

    def forward(self):
        vision_prompts, vision_hook = self.vision() if self.vision is not None else (None, None)
        return PromptSet(
            text_embeddings=self.template(self.ctx),
            eot_indices=self.template.eot_indices,
            text_length=self.template.text_length,
            text_hook=DeepPromptHook(list(self.deep_text_prompts), "text", self.template.context_start),
            vision_prompts=vision_prompts,
            vision_hook=vision_hook,
        )


class VisionPromptLearner(nn.Module):
    """VPT: deep vision prompts; the text side is the fixed "a photo of a {}."."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        vcfg = cfg.TRAINER.VPT
        check_depth("VPT", "PROMPT_DEPTH_VISION", vcfg.PROMPT_DEPTH_VISION,
                    len(clip_model.visual.transformer.resblocks), minimum=1)
        print("Vision Prompting Design")
        print(f"Number of context words (tokens) for Vision prompting: {vcfg.N_CTX_VISION}")
        self.vision = VisionDeepPrompts(vcfg.N_CTX_VISION, vcfg.PROMPT_DEPTH_VISION, clip_model.vision_width)
        self.text = FixedPrompts([f"a photo of a {c.replace('_', ' ')}." for c in classnames], clip_model)

    def forward(self):
        text = self.text()
        text.vision_prompts, text.vision_hook = self.vision()
        return text


_OFFICIAL_BLOCK_PROMPT = re.compile(r"^(image|text)_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")


def map_official_ivlp_keys(state_dict, vision_prefix):
    """Official IVLP/VPT keys -> ours (``vision_prefix``: where VisionDeepPrompts sits)."""
    mapped = {}
    for key, value in state_dict.items():
        match = _OFFICIAL_BLOCK_PROMPT.match(key)
        if key == "image_encoder.VPT":
            key = f"{vision_prefix}.vision_ctx"
        elif match:
            branch, layer = match.group(1), int(match.group(2))
            key = (f"{vision_prefix}.deep_vision_prompts.{layer - 1}" if branch == "image"
                   else f"prompt_learner.deep_text_prompts.{layer - 1}")
        mapped[key] = value
    return mapped


@TRAINER_REGISTRY.register()
class IVLP(ClipPromptTrainer):
    """Independent vision-language prompting (and, with vision depth 0, deep
    language prompting). Checkpoints: ``VLPromptLearner/model.pth.tar-N``."""

    CFG_NODE = "IVLP"
    MODEL_NAME = "VLPromptLearner"
    PREFIXED_KEYS = True

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.IVLP = CN()
        cfg.TRAINER.IVLP.N_CTX_VISION = 2  # vision prompt tokens per layer
        cfg.TRAINER.IVLP.N_CTX_TEXT = 2  # language prompt tokens per layer
        cfg.TRAINER.IVLP.CTX_INIT = "a photo of a"  # initialisation of the layer-0 language context
        cfg.TRAINER.IVLP.PREC = "fp16"  # fp16, fp32, amp, bf16
        cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 9  # 0 = no vision prompts (deep language prompting)
        cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 9

    def build_prompt_learner(self, cfg, classnames, clip_model):
        if cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION >= 1:
            require_vit(clip_model, "IVLP", cfg.MODEL.BACKBONE.NAME)
        return IndependentVLPromptLearner(cfg, classnames, clip_model)

    def map_checkpoint_keys(self, state_dict):
        return map_official_ivlp_keys(state_dict, "prompt_learner.vision")


@TRAINER_REGISTRY.register()
class VPT(ClipPromptTrainer):
    """Deep vision prompt tuning with a fixed text prompt. Checkpoints:
    ``prompt_learner/model.pth.tar-N`` with keys ``prompt_learner.*``."""

    CFG_NODE = "VPT"
    PREFIXED_KEYS = True

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.VPT = CN()
        cfg.TRAINER.VPT.N_CTX_VISION = 2  # vision prompt tokens per layer
        cfg.TRAINER.VPT.CTX_INIT = "a photo of a"  # unused by the method; kept for official configs
        cfg.TRAINER.VPT.PREC = "fp16"  # fp16, fp32, amp, bf16
        cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = 1  # 1 = shallow vision prompting

    def build_prompt_learner(self, cfg, classnames, clip_model):
        require_vit(clip_model, "VPT", cfg.MODEL.BACKBONE.NAME)
        return VisionPromptLearner(cfg, classnames, clip_model)

    def map_checkpoint_keys(self, state_dict):
        return map_official_ivlp_keys(state_dict, "prompt_learner.vision")
