"""Regularizers that compose with any prompting base, without a class per pair.

PromptSRC and CoPrompt are not prompting schemes: they add losses against the frozen CLIP (and,
for CoPrompt, residual adapters on the features; for PromptSRC, Gaussian aggregation of the
trained tensors over the epochs) on top of whatever produces the prompted features. A
regularizer is therefore a mixin class (one file each: ``trainers/promptsrc.py``,
``trainers/coprompt.py``) over :class:`Regularizer`, and :func:`register_compositions` builds one
trainer per (regularizer, base) pair with ``type()``: ``<Regularizer>_<Base>`` (``PromptSRC_BMIP``,
``CoPrompt_Bloom``, ...), or the regularizer's own name over its official base (``PromptSRC`` is
PromptSRC over IVLP, ``CoPrompt`` over MaPLe). A base registered later gets every regularizer
by the same loop.

The frozen CLIP is the base's own CLIP run without prompts (one copy of the weights, not the
second model the official code loads); what the regularizer compares against from the text side
(PromptSRC's template ensemble, CoPrompt's descriptions) is encoded once, before training.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .base import ClipPromptTrainer, TrainingOutput, tokenize_prompts

REGULARIZERS = []


def register_regularizer(cls):
    """Class decorator: ``cls`` composes with every base :func:`register_compositions` finds."""
    REGULARIZERS.append(cls)
    return cls


class RegularizedCLIP(nn.Module):
    """The module a regularized training step calls: the base's prompted CLIP, plus the frozen
    CLIP's image features of the same images (or of a second augmented view, when given).

    ``forward(image, *views)`` returns a :class:`TrainingOutput`; ``extras`` holds
    ``frozen_image_features`` (normalised, no gradient) and ``logit_scale`` (exp, as in the logits). Evaluation does not go through here:
    it is the base's model, unchanged.
    """

    def __init__(self, prompted):
        super().__init__()
        self.prompted = prompted

    def forward(self, image, *views):
        prompted = self.prompted
        teacher_input = views[0] if views else image
        with torch.no_grad():  # the same CLIP without prompts: no hook, nothing saved for backward
            frozen = F.normalize(prompted.clip_model.encode_image(teacher_input.type(prompted.dtype)), dim=-1)
        prompts = prompted.prompt_learner()
        image_features = prompted.encode_image(image, prompts)
        text_features = prompted.encode_text(prompts)
        return TrainingOutput(prompted.logits(image_features, text_features), image_features, text_features,
                              {"frozen_image_features": frozen, "logit_scale": prompted.clip_model.logit_scale.exp()})


@torch.no_grad()
def frozen_text_features(clip_model, texts, device, batch_size=1000):
    """Unnormalised features of ``texts`` by the frozen CLIP (no prompts), in batches, fp32."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenize_prompts(texts[start:start + batch_size], clip_model).to(device)
        length = clip_model.text_length_needed(tokens)  # causal: cut after the last end-of-text token
        embeddings = clip_model.token_embedding(tokens[:, :length])
        chunks.append(clip_model.encode_text_embeddings(embeddings, clip_model.pool_indices(tokens)).float())
    return torch.cat(chunks)


class Regularizer(ClipPromptTrainer):
    """Base of the regularizer mixins. A composition is ``type(name, (TheRegularizer, Base), ...)``,
    so a method here runs before the base's and reaches it with ``super()``.

    Class attributes a regularizer sets: ``NAME``, ``CFG_NODE`` (its config node, which also holds
    ``PREC``), ``MODEL_NAME`` (checkpoint folder, as the official code names it),
    ``OFFICIAL_BASE`` (the base of the official trainer, registered under ``NAME`` alone),
    ``OFFICIAL_PROMPT_KEYS`` ({base name: {regularizer key: base key}}: official configs of these
    compositions set the base's prompt keys in the regularizer's node), ``EXTRA_FROZEN_PREFIXES``
    (frozen models the official checkpoints also hold) and ``OFFICIAL_DEAD_KEYS`` (tensors an
    official checkpoint holds that its model never uses; dropped when ours has no such key).
    """

    NAME = None
    OFFICIAL_BASE = None
    OFFICIAL_PROMPT_KEYS = {}
    EXTRA_FROZEN_PREFIXES = ()
    OFFICIAL_DEAD_KEYS = ()
    PREFIXED_KEYS = True
    # set by register_compositions
    BASE = None

    # ------------------------------------------------------------------ config
    def base_config(self, cfg):
        """``cfg`` with the base's prompt keys taken from the regularizer's node, for the
        compositions whose official configs are written that way; ``cfg`` itself otherwise."""
        mapping = self.OFFICIAL_PROMPT_KEYS.get(self.BASE.__name__)
        if not mapping:
            return cfg
        cfg = cfg.clone()
        cfg.defrost()
        node, base_node = cfg.TRAINER[self.CFG_NODE], cfg.TRAINER[self.BASE.CFG_NODE]
        for key, base_key in mapping.items():
            base_node[base_key] = node[key]
        cfg.freeze()
        print(f"{self.BASE.__name__} prompt settings from TRAINER.{self.CFG_NODE} (the official config layout): "
              + ", ".join(f"{base_key}={base_node[base_key]!r}" for base_key in mapping.values()))
        return cfg

    # ------------------------------------------------------------------- model
    def build_prompt_learner(self, cfg, classnames, clip_model):
        return super().build_prompt_learner(self.base_config(cfg), classnames, clip_model)

    def regularizer_modules(self):
        """Trainable modules of the regularizer itself ({name: module}), registered and
        checkpointed beside ``prompt_learner`` (CoPrompt's adapters); none by default."""
        return {}

    def registered_module(self, prompt_learner):
        registered = super().registered_module(prompt_learner)
        for name, module in self.regularizer_modules().items():
            registered.add_module(name, module)
        return registered

    def training_model(self):
        return RegularizedCLIP(self.model).to(self.device)

    def before_train(self):
        super().before_train()
        with torch.no_grad():
            self.build_targets()

    def build_targets(self):
        """Encode what the losses compare with (once per run, before the first step)."""

    def class_names(self):
        """The class names as the prompts write them (``_`` read as a space)."""
        return [name.replace("_", " ") for name in self.dm.dataset.classnames]

    # ------------------------------------------------------------- checkpoints
    def map_checkpoint_keys(self, state_dict):
        expected = {f"prompt_learner.{key}" for key in self.prompt_learner.state_dict()}
        state_dict = {k: v for k, v in state_dict.items() if not (k in self.OFFICIAL_DEAD_KEYS and k not in expected)}
        return super().map_checkpoint_keys(state_dict)


def composable_bases():
    """Registered prompting trainers a regularizer can wrap: ``ClipPromptTrainer`` subclasses
    that are not compositions themselves and declare ``COMPOSABLE`` (per-class text features
    that do not depend on the image, and something to train)."""
    bases = []
    for name in TRAINER_REGISTRY.registered_names():
        cls = TRAINER_REGISTRY.get(name)
        if (isinstance(cls, type) and issubclass(cls, ClipPromptTrainer) and not issubclass(cls, Regularizer)
                and getattr(cls, "COMPOSABLE", False)):
            bases.append(cls)
    return bases


def composition_name(regularizer, base):
    return regularizer.NAME if base.__name__ == regularizer.OFFICIAL_BASE else f"{regularizer.NAME}_{base.__name__}"


def register_compositions():
    """Register ``<Regularizer>_<Base>`` for every regularizer and composable base (idempotent)."""
    registered = set(TRAINER_REGISTRY.registered_names())
    for regularizer in REGULARIZERS:
        for base in composable_bases():
            name = composition_name(regularizer, base)
            if name in registered:
                continue
            cls = type(name, (regularizer, base), {
                "__module__": regularizer.__module__,
                "__doc__": f"{regularizer.NAME} over {base.__name__} (composed in trainers/composition.py).",
                "BASE": base,
                "FROZEN_KEY_PREFIXES": tuple(base.FROZEN_KEY_PREFIXES) + tuple(regularizer.EXTRA_FROZEN_PREFIXES),
            })
            TRAINER_REGISTRY.register(cls)
            registered.add(name)
