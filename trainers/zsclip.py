"""Zero-shot CLIP with CoOp's hand-crafted prompt per dataset."""
import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import ClipPromptTrainer, PromptSet, tokenize_prompts

# One hand-written template per dataset, the ones CoOp evaluates zero-shot CLIP with.
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    "MiniShapes": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."


def template_for(dataset_name):
    """The zero-shot template of ``dataset_name`` ("a photo of a {}." if it has none)."""
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


class FixedPrompts(nn.Module):
    """A prompt learner with nothing to learn: fixed, tokenised sentences.

    Used for zero-shot CLIP and for the text side of vision-only methods.
    """

    def __init__(self, texts, clip_model):
        super().__init__()
        tokens = tokenize_prompts(texts, clip_model)
        with torch.no_grad():
            embeddings = clip_model.token_embedding(tokens)
        # Derived from the class names: rebuilt on every run, never checkpointed.
        self.register_buffer("embeddings", embeddings, persistent=False)
        self.register_buffer("eot_indices", clip_model.pool_indices(tokens), persistent=False)
        self.text_length = clip_model.text_length_needed(tokens)
        self.texts = list(texts)

    def forward(self):
        return PromptSet(self.embeddings, self.eot_indices, static_text=True, text_length=self.text_length)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipPromptTrainer):
    """CLIP classifying with "template.format(class name)" prompts; nothing trains.

    Run it with ``--eval-only``; ``train()`` goes straight to the final test so
    that sweeps treating every trainer alike still get a results.json.
    """

    COMPOSABLE = False  # no regularizer composition: nothing to train
    CFG_NODE = "ZSCLIP"

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.ZSCLIP = CN()
        cfg.TRAINER.ZSCLIP.PREC = "fp16"  # fp16, fp32, amp, bf16
        cfg.TRAINER.ZSCLIP.TEMPLATE = ""  # overrides the per-dataset template when set

    def build_prompt_learner(self, cfg, classnames, clip_model):
        template = cfg.TRAINER.ZSCLIP.TEMPLATE or template_for(cfg.DATASET.NAME)
        texts = [template.format(c.replace("_", " ")) for c in classnames]
        print(f"Prompts: {texts}")
        return FixedPrompts(texts, clip_model)

    def train(self):
        print("ZeroshotCLIP has no parameters to train: running the final test")
        self.set_aside_previous_results()
        self.test()
        self.write_results()
