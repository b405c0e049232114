"""CoPrompt: consistency-guided prompt learning (Roy & Etemad, ICLR 2024), as a regularizer.

On top of a prompting base (MaPLe for the official method):

* two residual adapters on the features, before they are normalised, trained with the prompts
  and used at test time: ``f = r * A(f) + (1 - r) * f`` with ``A = Linear(E, E/4) -> ReLU ->
  Linear(E/4, E) -> ReLU`` (no biases), r = 0.1 for the image and 0.2 for the text features;
* a consistency loss (``TRAINER.DISTILL``: cosine, or MSE for any other value) weighted by
  ``TRAINER.W``: between the prompted class text features and the frozen CLIP's embedding of one
  LLM-written description of each class (one description index drawn per training step, shared by
  all classes), and between the prompted image features of the first augmented view and the
  frozen image features of the second (``DATALOADER.K_TRANSFORMS 2``).

The descriptions are read from the official per-dataset JSON files (class name -> list of
sentences) at ``TRAINER.CoPrompt.DESCRIPTIONS`` (default: the official ``gpt_file/<dataset>_prompt.json``).
``CoPrompt`` is this regularizer over MaPLe; ``CoPrompt_<Base>`` over any other base.
"""
import json
import os
import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from .composition import Regularizer, frozen_text_features, register_regularizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# DATASET.NAME -> the file name stem of the official description files (gpt_file/<stem>_prompt.json)
DESCRIPTION_FILES = {
    "Caltech101": "caltech", "DescribableTextures": "dtd", "EuroSAT": "eurosat", "FGVCAircraft": "fgvc",
    "Food101": "food101", "ImageNet": "imagenet", "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r",
    "ImageNetSketch": "imagenet_sketch", "ImageNetV2": "imagenetv2", "OxfordFlowers": "oxford_flowers",
    "OxfordPets": "oxford_pets", "StanfordCars": "stanford_cars", "SUN397": "sun397", "UCF101": "ucf101",
    "MiniShapes": "minishapes",
}
# The official trainer overrides the config with these per-dataset values (TRAINER.CoPrompt.
# DATASET_SETTINGS True reproduces that; the official code also lets them win over the command line).
DATASET_SETTINGS = {
    "ImageNet": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 8.0},
    "Caltech101": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 4.0},
    "OxfordPets": {"PROMPT_DEPTH": 12, "N_CTX": 2, "W": 0.1},
    "StanfordCars": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 4.0},
    "OxfordFlowers": {"PROMPT_DEPTH": 9, "N_CTX": 4, "W": 8.0},
    "Food101": {"PROMPT_DEPTH": 9, "N_CTX": 4, "W": 0.5, "MAX_EPOCH": 5},
    "FGVCAircraft": {"PROMPT_DEPTH": 9, "N_CTX": 4, "W": 2.0},
    "SUN397": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 8.0},
    "DescribableTextures": {"PROMPT_DEPTH": 12, "N_CTX": 2, "W": 8.0},
    "EuroSAT": {"PROMPT_DEPTH": 12, "N_CTX": 2, "W": 0.1},
    "UCF101": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 2.0},
}


def applicable_settings(cfg):
    """The official per-dataset values that apply to ``cfg`` (``DATASET_SETTINGS`` on): all of them
    for ``CoPrompt`` itself, ``W`` and ``MAX_EPOCH`` over another base (whose prompts have their
    own node)."""
    settings = DATASET_SETTINGS.get(cfg.DATASET.NAME) if cfg.TRAINER.CoPrompt.DATASET_SETTINGS else None
    if not settings:
        return {}
    if cfg.TRAINER.NAME != "CoPrompt":
        settings = {k: v for k, v in settings.items() if k in ("W", "MAX_EPOCH")}
    return settings


class ResidualAdapter(nn.Module):
    """``ratio * fc(x) + (1 - ratio) * x`` with ``fc`` = Linear -> ReLU -> Linear -> ReLU (no
    biases; ``fc.0`` / ``fc.2`` as the official checkpoints name them)."""

    def __init__(self, width, reduction, ratio):
        super().__init__()
        self.ratio = float(ratio)
        self.fc = nn.Sequential(nn.Linear(width, width // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(width // reduction, width, bias=False), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.ratio * self.fc(x) + (1 - self.ratio) * x


def description_path(cfg):
    """The description file of ``cfg``'s dataset: ``TRAINER.CoPrompt.DESCRIPTIONS`` (``{dataset}`` in
    it is replaced by the file stem), else the official ``gpt_file/<stem>_prompt.json``. A relative
    path is looked up in the working directory, then in the repository."""
    stem = DESCRIPTION_FILES.get(cfg.DATASET.NAME, cfg.DATASET.NAME.lower())
    path = (cfg.TRAINER.CoPrompt.DESCRIPTIONS or "gpt_file/{dataset}_prompt.json").replace("{dataset}", stem)
    path = os.path.expanduser(path)
    if not os.path.isabs(path) and not os.path.exists(path) and os.path.exists(os.path.join(REPO_ROOT, path)):
        path = os.path.join(REPO_ROOT, path)
    return path


def read_descriptions(path, classnames):
    """{class name: [sentences]} for ``classnames`` from the JSON file ``path``; a missing file, a
    missing class or unequal numbers of sentences are errors naming the file and the class."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"TRAINER.CoPrompt.DESCRIPTIONS: no description file {path} (CoPrompt's LLM-written class "
            "descriptions: copy gpt_file/ from the official CoPrompt repository, or point the key to a JSON "
            "file {class name: [sentences]})")
    with open(path, encoding="utf-8") as handle:
        try:
            table = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON: {error}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a JSON object {{class name: [sentences]}}")
    found, counts = {}, {}
    for name in classnames:
        sentences = table.get(name)
        if not sentences or not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise KeyError(f"{path} has no descriptions for class {name!r} (class names are matched exactly, "
                           "with '_' read as a space)")
        found[name], counts[name] = sentences, len(sentences)
    if len(set(counts.values())) > 1:
        low = min(counts, key=counts.get)
        raise ValueError(f"{path}: every class needs the same number of descriptions (one index is drawn for all "
                         f"classes per step); {low!r} has {counts[low]}, others {max(counts.values())}")
    return found


def consistency_loss(output, description_features, kind):
    """CoPrompt's consistency of the prompted features with the frozen targets."""
    text, image = output.text_features, output.image_features
    target_text = F.normalize(description_features.to(text.dtype), dim=-1)
    target_image = output.extras["frozen_image_features"]
    if kind == "cosine":
        return ((1 - F.cosine_similarity(text, target_text, dim=1, eps=1e-7).mean())
                + (1 - F.cosine_similarity(image, target_image, dim=1, eps=1e-7).mean()))
    return F.mse_loss(text, target_text) + F.mse_loss(image, target_image)


@register_regularizer
class CoPromptRegularizer(Regularizer):
    """Consistency-guided prompts over a prompting base; checkpoints in
    ``MultiModalPromptLearner/`` with the adapters as ``adapter_image.*`` / ``adapter_text.*``."""

    NAME = "CoPrompt"
    CFG_NODE = "CoPrompt"
    MODEL_NAME = "MultiModalPromptLearner"
    OFFICIAL_BASE = "MaPLe"
    OFFICIAL_PROMPT_KEYS = {"MaPLe": {"N_CTX": "N_CTX", "CTX_INIT": "CTX_INIT", "PROMPT_DEPTH": "PROMPT_DEPTH"}}
    # the official model keeps a second whole CLIP for the targets
    EXTRA_FROZEN_PREFIXES = ("model_distill.",)

    @staticmethod
    def extend_cfg(cfg):
        if "CoPrompt" in cfg.TRAINER:
            return
        node = cfg.TRAINER.CoPrompt = CN()
        node.N_CTX = 2  # CoPrompt (MaPLe base): context tokens per layer
        node.CTX_INIT = "a photo of a"
        node.PREC = "fp16"  # fp16, fp32, amp, bf16 (every CoPrompt composition)
        node.PROMPT_DEPTH = 9
        node.DESCRIPTIONS = ""  # JSON {class: [sentences]}; "" = gpt_file/<dataset>_prompt.json
        node.DATASET_SETTINGS = True  # the official per-dataset PROMPT_DEPTH, N_CTX, W (and Food101's epochs)
        node.ADAPTER_REDUCTION = 4  # official, hard-coded there
        node.IMAGE_ADAPTER_RATIO = 0.1
        node.TEXT_ADAPTER_RATIO = 0.2
        cfg.TRAINER.W = 8.0  # weight of the consistency loss (official key, directly under TRAINER)
        cfg.TRAINER.DISTILL = "cosine"  # "cosine", anything else: MSE

    @staticmethod
    def adjust_cfg(cfg):
        """Apply the official per-dataset settings (with ``DATASET_SETTINGS``); returns what changed."""
        settings = applicable_settings(cfg)
        changed = {}
        for key, value in settings.items():
            node, name = (cfg.OPTIM, "OPTIM.MAX_EPOCH") if key == "MAX_EPOCH" else (
                (cfg.TRAINER, "TRAINER.W") if key == "W" else (cfg.TRAINER.CoPrompt, f"TRAINER.CoPrompt.{key}"))
            if node[key] != value:
                node[key] = value
                changed[name] = value
        return changed

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.DATALOADER.K_TRANSFORMS != 2:
            raise ValueError(f"DATALOADER.K_TRANSFORMS must be 2 for {cfg.TRAINER.NAME} (its second augmented view "
                             f"feeds the frozen image encoder), got {cfg.DATALOADER.K_TRANSFORMS}")
        w = cfg.TRAINER.W
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ValueError(f"TRAINER.W must be a number >= 0, got {w!r}")

    # ------------------------------------------------------------------ model
    def build_prompt_learner(self, cfg, classnames, clip_model):
        settings = applicable_settings(cfg)
        if settings:
            print(f"CoPrompt: the official settings for {cfg.DATASET.NAME} ({', '.join(f'{k} {v}' for k, v in settings.items())}); "
                  "TRAINER.CoPrompt.DATASET_SETTINGS False keeps the config's values")
        return super().build_prompt_learner(cfg, classnames, clip_model)

    def build_prompted_clip(self, clip_model, prompt_learner):
        prompted = super().build_prompted_clip(clip_model, prompt_learner)
        node = self.cfg.TRAINER.CoPrompt
        width = clip_model.embed_dim
        prompted.image_head = ResidualAdapter(width, node.ADAPTER_REDUCTION, node.IMAGE_ADAPTER_RATIO)
        prompted.text_head = ResidualAdapter(width, node.ADAPTER_REDUCTION, node.TEXT_ADAPTER_RATIO)
        return prompted

    def regularizer_modules(self):
        return {"adapter_image": self.model.image_head, "adapter_text": self.model.text_head}

    def build_targets(self):
        """The frozen CLIP's normalised embeddings of every class description, (n_desc, n_cls, E)."""
        names = self.class_names()
        path = description_path(self.cfg)
        descriptions = read_descriptions(path, names)
        per_class = len(descriptions[names[0]])
        texts = [sentence for name in names for sentence in descriptions[name]]
        feats = F.normalize(frozen_text_features(self.model.clip_model, texts, self.device), dim=-1)
        self.description_features = feats.view(len(names), per_class, -1).transpose(0, 1).contiguous()
        print(f"CoPrompt: {per_class} description(s) per class from {path}")

    # ------------------------------------------------------------------- loss
    def compute_loss(self, output, label):
        # one description per step, the same index for every class (Python's global random, as
        # the official code draws it)
        index = random.randint(0, self.description_features.shape[0] - 1)
        ce = F.cross_entropy(output.logits, label)
        consistency = consistency_loss(output, self.description_features[index], self.cfg.TRAINER.DISTILL)
        self._terms = {"loss_ce": ce.item(), "loss_consistency": consistency.item()}
        return ce + self.cfg.TRAINER.W * consistency

    def loss_terms(self, output):
        return dict(getattr(self, "_terms", {}))
