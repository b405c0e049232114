"""CoCoOp: conditional context optimisation (Zhou et al., CVPR 2022).

A small meta-network turns each image's feature into a bias added to every
context vector, so each image gets its own class prompts. The text encoder
therefore runs on (images x classes) prompts: here as one batched call per
chunk of images, the chunk sized so that at most TRAINER.COCOOP.MAX_TEXT_BATCH
prompt sequences go through the text encoder at once.
"""
import contextlib
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import ClipPromptTrainer, PromptedCLIP, encode_class_texts
from .prompting import ClassPromptTemplate, init_text_context


class CoCoOpPromptLearner(nn.Module):
    """``ctx`` and ``meta_net.{linear1,linear2}`` as in the official checkpoints."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        ccfg = cfg.TRAINER.COCOOP
        ctx, prompt_prefix, n_ctx = init_text_context(clip_model, ccfg.N_CTX, ccfg.CTX_INIT, rule="coop")
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        vis_dim, ctx_dim = clip_model.embed_dim, clip_model.text_width
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ]))
        self.template = ClassPromptTemplate(clip_model, classnames, prompt_prefix, n_ctx)

    def instance_context(self, image_features):
        """(B, E) normalised image features -> (B, n_ctx, D) conditioned context."""
        bias = self.meta_net(image_features.to(self.ctx.dtype))
        return self.ctx.unsqueeze(0) + bias.unsqueeze(1)


class InstanceConditionedCLIP(PromptedCLIP):
    """CLIP whose class prompts depend on the image (nothing to cache per evaluation)."""

    TEXT_DEPENDS_ON_IMAGE = True

    def __init__(self, clip_model, prompt_learner, max_text_batch):
        super().__init__(clip_model, prompt_learner)
        if max_text_batch < 1:
            raise ValueError(f"TRAINER.COCOOP.MAX_TEXT_BATCH must be >= 1, got {max_text_batch}")
        self.max_text_batch = max_text_batch

    def forward(self, image):
        img = F.normalize(self.clip_model.encode_image(image.type(self.dtype)), dim=-1)
        ctx = self.prompt_learner.instance_context(img)
        template = self.prompt_learner.template
        n_cls = template.n_cls
        images_per_call = max(1, self.max_text_batch // n_cls)
        scale = self.clip_model.logit_scale.exp()
        logits = []
        for start in range(0, img.shape[0], images_per_call):
            chunk = slice(start, start + images_per_call)
            prompts, eot = template.per_instance(ctx[chunk])
            text = encode_class_texts(self.clip_model, prompts, eot, length=template.text_length)
            text = text.view(-1, n_cls, img.shape[-1])
            logits.append(scale * torch.einsum("be,bce->bc", img[chunk], text.type(img.dtype)))
        return torch.cat(logits)

    @contextlib.contextmanager
    def cached_text_features(self):
        yield


@TRAINER_REGISTRY.register()
class CoCoOp(ClipPromptTrainer):
    """Conditional context optimisation; checkpoints ``prompt_learner/model.pth.tar-N``
    with keys ``ctx``, ``meta_net.*`` as the official ones."""

    COMPOSABLE = False  # no regularizer composition: its class text features depend on the image
    CFG_NODE = "COCOOP"

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.COCOOP = CN()
        cfg.TRAINER.COCOOP.N_CTX = 16  # number of context vectors
        cfg.TRAINER.COCOOP.CTX_INIT = ""  # initialisation words, e.g. "a photo of a"
        cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16, fp32, amp, bf16
        # Prompt sequences per text-encoder call (images x classes are chunked by image).
        cfg.TRAINER.COCOOP.MAX_TEXT_BATCH = 2048

    def build_prompt_learner(self, cfg, classnames, clip_model):
        return CoCoOpPromptLearner(cfg, classnames, clip_model)

    def build_prompted_clip(self, clip_model, prompt_learner):
        return InstanceConditionedCLIP(clip_model, prompt_learner, self.cfg.TRAINER.COCOOP.MAX_TEXT_BATCH)
