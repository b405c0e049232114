"""PromptSRC: self-regulating prompts (Khattak et al., ICCV 2023), as a regularizer over any base.

Three consistency losses against the frozen CLIP, added to the cross-entropy:

* text: L1 between the prompted class text features and the frozen features of a 60-template
  ensemble (mean of the unnormalised features over templates, then normalised), weight
  ``TEXT_LOSS_WEIGHT``;
* image: L1 between the prompted and the frozen image features of the batch, ``IMAGE_LOSS_WEIGHT``;
* logits: KL(frozen zero-shot || prompted) over the classes, summed over the batch and divided by
  the number of logits (the official reduction), weight 1.

The trained tensors are aggregated over the epochs with Gaussian weights (GPA_MEAN, GPA_STD over
epochs 1..MAX_EPOCH, normalised to sum to 1); after the last epoch the aggregate is the model that
is tested and saved. The running aggregate is part of the trainer state in every checkpoint, so
a resumed run ends exactly where an uninterrupted one does.

``PromptSRC`` is this regularizer over IVLP (4+4 context tokens, depth 9: the official method);
``PromptSRC_<Base>`` over any other base (trainers/composition.py). docs/METHODS.md lists where
we differ from the official code (one CLIP instead of two copies, only the trained tensors are
aggregated).
"""
import math

import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip.tokenizer import load_open_clip_module

from .composition import Regularizer, register_regularizer

_PROMPT_KEYS = ("N_CTX_VISION", "N_CTX_TEXT", "CTX_INIT", "PROMPT_DEPTH_VISION", "PROMPT_DEPTH_TEXT")


def ensemble_templates():
    """The 60 templates of the official text ensemble: "a photo of a {}." followed by the first
    60 of OpenAI's 80 ImageNet templates without it (open_clip ships OpenAI's list)."""
    openai = [template("{}") for template in load_open_clip_module("zero_shot_metadata").OPENAI_IMAGENET_TEMPLATES]
    first = "a photo of a {}."
    return [first] + [t for t in openai[:60] if t != first]


def gpa_weights(mean, std, n_epochs):
    """Per-epoch weights of the Gaussian prompt aggregation: the normal density at epochs
    1..n_epochs, normalised to sum to 1 (float64, as the official numpy computation)."""
    density = [math.exp(-0.5 * ((epoch - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
               for epoch in range(1, n_epochs + 1)]
    total = sum(density)
    return [value / total for value in density]


def promptsrc_losses(output, label, template_features, text_weight, image_weight):
    """{term: loss} of PromptSRC for a training forward's ``output`` (TrainingOutput)."""
    logits = output.logits
    frozen_image = output.extras["frozen_image_features"]
    targets = template_features.to(output.text_features.device)
    zero_shot_logits = output.extras["logit_scale"] * frozen_image @ targets.t().type(frozen_image.dtype)
    kl = F.kl_div(F.log_softmax(logits.float(), dim=1), F.log_softmax(zero_shot_logits.float(), dim=1),
                  reduction="sum", log_target=True) / logits.numel()
    return {
        "loss_ce": F.cross_entropy(logits, label),
        "loss_text": text_weight * F.l1_loss(output.text_features.float(), targets.float()),
        "loss_image": image_weight * F.l1_loss(output.image_features, frozen_image),
        "loss_kl": kl,
    }


@register_regularizer
class PromptSRCRegularizer(Regularizer):
    """Self-regulating prompts over a prompting base; checkpoints in ``VLPromptLearner/`` as the
    official PromptSRC and PromptSRC_BMIP code names them."""

    NAME = "PromptSRC"
    CFG_NODE = "PROMPTSRC"
    MODEL_NAME = "VLPromptLearner"
    OFFICIAL_BASE = "IVLP"
    OFFICIAL_PROMPT_KEYS = {
        "IVLP": {key: key for key in _PROMPT_KEYS},
        # LAMDASZ-ML/BMIP's PromptSRC_BMIP configs set BMIP's prompts in TRAINER.PROMPTSRC
        "BMIP": {"N_CTX_TEXT": "N_CTX", "PROMPT_DEPTH": "PROMPT_DEPTH", "CTX_INIT": "CTX_INIT"},
    }
    # the official model keeps a second frozen image encoder inside the prompt learner
    EXTRA_FROZEN_PREFIXES = ("prompt_learner.ZS_image_encoder.",)
    # PromptSRC_BMIP's prompt learner also holds an unused copy of the initial context
    OFFICIAL_DEAD_KEYS = ("prompt_learner.ctx",)

    @staticmethod
    def extend_cfg(cfg):
        if "PROMPTSRC" in cfg.TRAINER:
            return
        node = cfg.TRAINER.PROMPTSRC = CN()
        node.N_CTX_VISION = 4  # PromptSRC (IVLP base): vision prompt tokens per layer
        node.N_CTX_TEXT = 4  # language prompt tokens per layer (PromptSRC_BMIP: BMIP's N_CTX)
        node.CTX_INIT = "a photo of a"
        node.PREC = "fp16"  # fp16, fp32, amp, bf16 (every PromptSRC composition)
        node.PROMPT_DEPTH_VISION = 9
        node.PROMPT_DEPTH_TEXT = 9
        node.TEXT_LOSS_WEIGHT = 25  # ints, as the official defaults (yacs keeps the type)
        node.IMAGE_LOSS_WEIGHT = 10
        node.GPA_MEAN = 15  # Gaussian prompt aggregation over epochs 1..MAX_EPOCH
        node.GPA_STD = 1
        # keys of LAMDASZ-ML/BMIP's train.py, so its PromptSRC_BMIP configs merge unchanged
        node.N_CTX = 4  # unused there too
        node.PROMPT_DEPTH = 9  # PromptSRC_BMIP: BMIP's PROMPT_DEPTH
        node.CONNECT_METHOD = "None"  # unused

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.PROMPTSRC
        for key in ("TEXT_LOSS_WEIGHT", "IMAGE_LOSS_WEIGHT", "GPA_STD"):
            value = node[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
                    key == "GPA_STD" and value == 0):
                raise ValueError(f"TRAINER.PROMPTSRC.{key} must be a number {'> 0' if key == 'GPA_STD' else '>= 0'}, "
                                 f"got {value!r}")

    # ---------------------------------------------------------------- targets
    def build_targets(self):
        """The frozen CLIP's template-ensemble class features (mean of the unnormalised features
        over the 60 templates, then normalised), encoded once per run."""
        from .composition import frozen_text_features

        names = self.class_names()
        templates = ensemble_templates()
        feats = frozen_text_features(self.model.clip_model, [t.format(c) for t in templates for c in names],
                                     self.device)
        mean = feats.view(len(templates), len(names), -1).mean(dim=0)
        self.template_features = F.normalize(mean, dim=-1)
        print(f"PromptSRC: frozen text features of {len(names)} classes x {len(templates)} templates")

    # ------------------------------------------------------------------- loss
    def compute_loss(self, output, label):
        node = self.cfg.TRAINER.PROMPTSRC
        terms = promptsrc_losses(output, label, self.template_features, node.TEXT_LOSS_WEIGHT,
                                 node.IMAGE_LOSS_WEIGHT)
        self._terms = {name: value.item() for name, value in terms.items()}
        return sum(terms.values())

    def loss_terms(self, output):
        return dict(getattr(self, "_terms", {}))

    # ------------------------------------------------------- prompt aggregation
    def aggregated_module(self):
        return self._models[self.get_model_names()[0]]

    def after_epoch(self):
        """Add this epoch's trained tensors with their Gaussian weight; after the last epoch the
        aggregate replaces them (before the validation, the checkpoint and the final test)."""
        weights = gpa_weights(float(self.cfg.TRAINER.PROMPTSRC.GPA_MEAN), float(self.cfg.TRAINER.PROMPTSRC.GPA_STD),
                              self.max_epoch)
        weight = weights[self.epoch]
        module = self.aggregated_module()
        with torch.no_grad():
            current = {k: v.detach() for k, v in module.state_dict().items()}
            if not getattr(self, "gpa_sum", None):
                self.gpa_sum = {k: v * weight for k, v in current.items()}
            else:
                self.gpa_sum = {k: self.gpa_sum[k] + v * weight for k, v in current.items()}
            if self.epoch + 1 == self.max_epoch:
                module.load_state_dict(self.gpa_sum)
                print(f"PromptSRC: the model is now the Gaussian aggregate of epochs 1..{self.max_epoch} "
                      f"(GPA_MEAN {self.cfg.TRAINER.PROMPTSRC.GPA_MEAN}, GPA_STD {self.cfg.TRAINER.PROMPTSRC.GPA_STD})")
        super().after_epoch()

    def state_dict(self):
        state = super().state_dict()
        if getattr(self, "gpa_sum", None):
            state["gpa_sum"] = {k: v.detach().cpu().clone() for k, v in self.gpa_sum.items()}
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "gpa_sum" in state:
            device = next(iter(self.aggregated_module().state_dict().values())).device
            self.gpa_sum = {k: v.to(device) for k, v in state["gpa_sum"].items()}
