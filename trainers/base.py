"""What every CLIP prompt-learning trainer shares, written once.

A method contributes a *prompt learner*: an ``nn.Module`` that holds every
trainable tensor of the method and, when called, returns a :class:`PromptSet`
(text token embeddings + text hook, vision prompts + vision hook). Everything
else lives here: loading CLIP, freezing it, precision, the optimizer, the
training step, checkpoint key handling and evaluation with the class text
features computed once per evaluation.
"""
import contextlib
import inspect
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

import clip
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_optimizer, build_lr_scheduler
from dassl.utils import count_num_param, load_released_checkpoint, state_dict_of, strip_module_prefix
from dassl.utils import distributed as dist_utils
from dassl.utils.faults import fault_point

from .feature_cache import FeatureCache, cache_key, default_cache_dir, image_list_digest, weights_digest

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


@dataclass
class PromptSet:
    """The inputs a prompt learner feeds into CLIP for one forward pass.

    text_embeddings: (n_cls, L, D_text) token embeddings of the class prompts.
    eot_indices: (n_cls,) position of each prompt's end-of-text token.
    text_hook / vision_hook: per-layer hooks ``hook(i, x, block) -> x`` or None.
    vision_prompts: (P, D_vision) or (N, P, D_vision) tokens appended after the
        patches at the input of the image encoder, or None.
    """

    text_embeddings: torch.Tensor
    eot_indices: torch.Tensor
    text_hook: Optional[Callable] = None
    vision_prompts: Optional[torch.Tensor] = None
    vision_hook: Optional[Callable] = None
    # True when the text side has nothing trainable: its features are then
    # encoded once and reused for every step.
    static_text: bool = False
    # max(eot_indices) + 1 as a Python int when the learner knows it (its templates
    # do): the sequences are cut there without reading a tensor, which keeps a
    # torch.compile'd step in one graph.
    text_length: Optional[int] = None


def encode_class_texts(clip_model, embeddings, eot_indices, hook=None, length=None, normalize=True):
    """Text features of token ``embeddings`` (N, L, D), L2-normalised unless ``normalize=False``.

    The sequences are cut after the last end-of-text token (``length`` = the
    last EOT position + 1, computed when not given): under the causal mask no
    position up to an EOT attends to anything after it, so the features are the
    same and the (often 77 -> ~20 tokens) shorter sequences are cheaper.
    """
    if length is None:
        length = int(eot_indices.max()) + 1
    feats = clip_model.encode_text_embeddings(embeddings[:, :length], eot_indices, hook=hook)
    return F.normalize(feats, dim=-1) if normalize else feats


@dataclass
class TrainingOutput:
    """What a regularized model's training forward returns (see trainers/composition.py):
    the class logits and the L2-normalised features the regularizer's losses compare."""

    logits: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    extras: dict


def logits_of(output):
    """The class logits of a training forward's output (plain logits or a TrainingOutput)."""
    return output.logits if isinstance(output, TrainingOutput) else output


def load_clip_model(cfg):
    """Load the CLIP named by ``MODEL.BACKBONE.NAME`` (OpenAI name, local file, or ``openclip:<model>``
    with ``MODEL.BACKBONE.WEIGHTS``) in fp32 on the CPU, and check ``INPUT.SIZE`` against its resolution."""
    name = cfg.MODEL.BACKBONE.NAME
    print(f"Loading CLIP (backbone: {name})")
    if clip.openclip.is_openclip_name(name):
        if not cfg.MODEL.BACKBONE.WEIGHTS:
            raise ValueError(f"MODEL.BACKBONE.NAME {name} needs MODEL.BACKBONE.WEIGHTS <file> (open_clip's .bin, .pt "
                             f"or .safetensors state dict; docs/BACKBONES.md)")
        model = clip.openclip.build_openclip(name, cfg.MODEL.BACKBONE.WEIGHTS, cfg.MODEL.BACKBONE.TAG or None,
                                             cfg.MODEL.BACKBONE.TOKENIZER or None)
    else:
        if cfg.MODEL.BACKBONE.WEIGHTS:
            raise ValueError(f"MODEL.BACKBONE.WEIGHTS is for openclip:<model> backbones; MODEL.BACKBONE.NAME {name} "
                             f"names its weights itself")
        model, _ = clip.load(name, device="cpu")
    res = model.image_resolution
    size = tuple(cfg.INPUT.SIZE)
    if size != (res, res):
        raise ValueError(
            f"INPUT.SIZE {list(size)} does not match the input resolution of backbone {name} "
            f"({res}x{res}); set INPUT.SIZE ({res}, {res})"
        )
    return model


def apply_backbone_preprocessing(cfg):
    """Give ``INPUT`` the preprocessing of an ``openclip:`` backbone (its open_clip configuration).

    ``INPUT.SIZE``, ``PIXEL_MEAN``, ``PIXEL_STD`` and ``INTERPOLATION`` that still hold Dassl's defaults
    or OpenAI CLIP's preprocessing (what every shipped method config writes) take the backbone's
    values; any other value was chosen for this run and is kept. Returns the changes made, as
    ``{key: (old, new)}``. OpenAI backbones are left alone."""
    name = cfg.MODEL.BACKBONE.NAME
    if not clip.openclip.is_openclip_name(name):
        return {}
    wanted = clip.openclip.preprocess_config(name, cfg.MODEL.BACKBONE.TAG or None)
    if wanted["resize_mode"] not in ("shortest", "squash"):
        raise ValueError(f"MODEL.BACKBONE.NAME {name}: resize mode {wanted['resize_mode']!r} of its open_clip "
                         f"preprocessing is not supported by the data pipeline (INPUT.RESIZE_MODE shortest, squash)")
    from dassl.config import get_cfg_default

    openai, dassl = clip.openclip.OPENAI_PREPROCESS, get_cfg_default().INPUT
    inherited = {
        "SIZE": (tuple(dassl.SIZE),), "PIXEL_MEAN": (tuple(dassl.PIXEL_MEAN), tuple(openai["mean"])),
        "PIXEL_STD": (tuple(dassl.PIXEL_STD), tuple(openai["std"])),
        "INTERPOLATION": (dassl.INTERPOLATION, openai["interpolation"]), "RESIZE_MODE": (dassl.RESIZE_MODE,),
    }
    target = {"SIZE": (wanted["size"], wanted["size"]), "PIXEL_MEAN": tuple(wanted["mean"]),
              "PIXEL_STD": tuple(wanted["std"]), "INTERPOLATION": wanted["interpolation"],
              "RESIZE_MODE": wanted["resize_mode"]}
    changes = {}
    for key, value in target.items():
        current = cfg.INPUT[key]
        current_cmp = tuple(float(v) for v in current) if isinstance(current, (list, tuple)) else current
        inherited_cmp = [tuple(float(v) for v in option) if isinstance(option, tuple) else option
                         for option in inherited[key]]
        if current_cmp in inherited_cmp and current_cmp != value:
            new = type(current)(value) if isinstance(current, (list, tuple)) else value
            changes[key] = (current, new)
            cfg.INPUT[key] = new
    return changes


def tokenize_prompts(texts, clip_model):
    """Token ids ``(N, context_length)`` of prompt strings, by ``clip_model``'s own tokenizer (OpenAI's
    BPE, or e.g. SigLIP's; ``clip_model.text_tokenizer``)."""
    return clip_model.text_tokenizer.tokenize(list(texts))


class PromptedCLIP(nn.Module):
    """A frozen CLIP driven by a prompt learner.

    ``forward(image)`` returns the scaled cosine logits (N, n_cls). Inside
    :meth:`cached_text_features` the class text features are computed once and
    reused for every batch; that is valid for every method whose text side
    does not depend on the image.
    """

    # Whether the class text features depend on the image (then nothing is cached).
    TEXT_DEPENDS_ON_IMAGE = False

    def __init__(self, clip_model, prompt_learner):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.clip_model = clip_model
        self._cache = None
        self._static_text = None
        # Optional maps applied to the features before they are normalised (CoPrompt's residual
        # adapters). Submodules here, so moves and casts reach them; the trainer registers them
        # (and so checkpoints them) beside the prompt learner.
        self.image_head = None
        self.text_head = None
        self.recorded_image_features = None

    @property
    def dtype(self):
        return self.clip_model.dtype

    def _head(self, kind, feats):
        head = self.image_head if kind == "image" else self.text_head
        return feats if head is None else head(feats)

    def encode_text(self, prompts: PromptSet):
        """L2-normalised class text features (n_cls, E); fixed texts are encoded once."""
        if not prompts.static_text:
            raw = encode_class_texts(self.clip_model, prompts.text_embeddings, prompts.eot_indices,
                                     prompts.text_hook, prompts.text_length, normalize=False)
            return F.normalize(self._head("text", raw), dim=-1)
        device = prompts.text_embeddings.device
        if self._static_text is None or self._static_text.device != device:
            with torch.no_grad():
                self._static_text = encode_class_texts(self.clip_model, prompts.text_embeddings,
                                                       prompts.eot_indices, prompts.text_hook,
                                                       prompts.text_length, normalize=False)
        return F.normalize(self._head("text", self._static_text), dim=-1)

    def encode_image(self, image, prompts: PromptSet):
        """L2-normalised image features (N, E)."""
        feats = self.clip_model.encode_image(
            image.type(self.dtype), prompts=prompts.vision_prompts, hook=prompts.vision_hook
        )
        if self.recorded_image_features is not None:  # filled for the feature cache (trainers/feature_cache.py)
            self.recorded_image_features.append(feats.detach())
        return F.normalize(self._head("image", feats), dim=-1)

    def logits_from_image_features(self, feats):
        """Logits of raw (unnormalised) image features against the cached class texts (inside
        :meth:`cached_text_features`), computed as :meth:`forward` computes them."""
        _, text = self._cache
        return self.logits(F.normalize(self._head("image", feats), dim=-1), text)

    def forward(self, image):
        if self._cache is not None:
            prompts, text = self._cache
            img = self.encode_image(image, prompts)
        else:
            prompts = self.prompt_learner()
            # Image tower first: its forward then runs before the text tower's saved
            # activations exist, which lowers a training step's peak memory (measured:
            # ViT-B/16, 50 classes, batch 4: ~90 MB of ~830 MB for MaPLe).
            img = self.encode_image(image, prompts)
            text = self.encode_text(prompts)
        return self.logits(img, text)

    def logits(self, image_features, text_features):
        """CLIP's scaled cosine logits of normalised features: (N, E) x (n_cls, E) -> (N, n_cls)."""
        return self.clip_model.logit_scale.exp() * image_features @ text_features.t().type(image_features.dtype)

    @contextlib.contextmanager
    def cached_text_features(self):
        """Build the prompts and encode the class texts once for the whole block
        (an evaluation pass); every batch inside reuses them."""
        with torch.no_grad():
            prompts = self.prompt_learner()
            self._cache = (prompts, self.encode_text(prompts))
        try:
            yield
        finally:
            self._cache = None


class ClipPromptTrainer(TrainerX):
    """Base trainer for prompt learning on a frozen CLIP.

    Subclasses set ``CFG_NODE`` (the ``cfg.TRAINER.<NODE>`` holding their keys),
    implement :meth:`build_prompt_learner` and, for their config defaults,
    :meth:`extend_cfg`. Only the prompt learner is trained, optimised and
    checkpointed (registered as ``prompt_learner`` like the official repos).
    """

    CFG_NODE = None
    # Whether a regularizer (trainers/composition.py) may wrap this trainer: it needs per-class
    # text features that do not depend on the image and something to train.
    COMPOSABLE = True
    # Name the trainable module is registered (and its checkpoint folder named)
    # under, and whether its keys carry "prompt_learner.": both as in the
    # official repository, so its released weights load from --model-dir.
    MODEL_NAME = "prompt_learner"
    PREFIXED_KEYS = False
    # Keys of official checkpoints that are derived from the class names (and
    # therefore rebuilt, not loaded).
    IGNORED_CHECKPOINT_KEYS = ("token_prefix", "token_suffix")
    # Official trainers that register the whole model also save the frozen CLIP.
    FROZEN_KEY_PREFIXES = ("image_encoder.", "text_encoder.", "logit_scale")

    @staticmethod
    def extend_cfg(cfg):
        """Add this trainer's config node with its defaults to ``cfg``."""

    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.CFG_NODE]

    def check_cfg(self, cfg):
        prec = cfg.TRAINER[self.CFG_NODE].PREC
        if prec not in PRECISIONS:
            raise ValueError(
                f"TRAINER.{self.CFG_NODE}.PREC {prec!r} is not one of {', '.join(PRECISIONS)}"
            )

    def build_prompt_learner(self, cfg, classnames, clip_model):
        """Return the method's prompt learner (an nn.Module returning a PromptSet)."""
        raise NotImplementedError

    def build_prompted_clip(self, clip_model, prompt_learner):
        """The model trained and evaluated: CLIP driven by the prompt learner."""
        return PromptedCLIP(clip_model, prompt_learner)

    def registered_module(self, prompt_learner):
        """The module registered, optimised and checkpointed: the prompt learner, under
        ``prompt_learner.`` when ``PREFIXED_KEYS`` (as the official checkpoints name it)."""
        if not self.PREFIXED_KEYS:
            return prompt_learner
        registered = nn.Module()
        registered.prompt_learner = prompt_learner
        return registered

    # ------------------------------------------------------------- precision
    def resolve_precision(self):
        """Effective precision on this device (fp16 is CUDA-only; CPU falls back)."""
        prec = self.method_cfg.PREC
        if self.device.type != "cuda" and prec == "fp16":
            print(f"TRAINER.{self.CFG_NODE}.PREC fp16 is not supported on {self.device}; using fp32")
            return "fp32"
        if self.device.type != "cuda" and prec == "amp":
            print(f"TRAINER.{self.CFG_NODE}.PREC amp on {self.device}: using bf16 autocast")
            return "bf16"
        return prec

    def autocast(self):
        """Autocast context for the effective precision (no-op for fp32/fp16)."""
        if self.precision == "amp":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ---------------------------------------------------------------- model
    def load_clip(self):
        """The frozen CLIP this trainer prompts (``MODEL.BACKBONE.NAME``); the benchmark
        overrides it to share one randomly initialised CLIP between trainers."""
        return load_clip_model(self.cfg)

    def build_model(self):
        cfg = self.cfg
        self.precision = self.resolve_precision()
        classnames = self.dm.dataset.classnames
        # An OpenAI backbone is downloaded on first use: rank 0 fetches it, the others read it.
        with dist_utils.main_process_first():
            clip_model = self.load_clip()
        print("Building custom CLIP")
        prompt_learner = self.build_prompt_learner(cfg, classnames, clip_model)
        self.model = self.build_prompted_clip(clip_model, prompt_learner)

        print("Turning off gradients in both the image and the text encoder")
        for p in self.model.clip_model.parameters():
            p.requires_grad_(False)
        # The module that is registered, optimised and checkpointed.
        self.prompt_learner = prompt_learner  # (key mapping of checkpoints reads it)
        registered = self.registered_module(prompt_learner)
        trainable = sorted(n for n, p in registered.named_parameters() if p.requires_grad)
        shown = trainable if len(trainable) <= 12 else trainable[:12] + [f"... ({len(trainable)} tensors)"]
        print(f"Parameters to be updated: {shown}")
        print(f"# trainable params: {count_num_param(registered):,}")
        if cfg.MODEL.INIT_WEIGHTS:
            self._load_weights_into(registered, state_dict_of(load_released_checkpoint(cfg.MODEL.INIT_WEIGHTS)),
                                    cfg.MODEL.INIT_WEIGHTS)
        if self.precision == "fp16":
            self.model.half()
        self.model.to(self.device)

        if trainable:
            self.optim = build_optimizer(registered, cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        else:
            self.optim = self.sched = None
        self.register_model(self.MODEL_NAME, registered, self.optim, self.sched)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None
        self.train_model = self.compile_if_requested(self.wrap_for_data_parallel(self.training_model()))

    def training_model(self):
        """The module a training step calls (``self.model``; a regularizer wraps it to also
        return the features its losses need)."""
        return self.model

    def compile_if_requested(self, model):
        """``model`` through ``torch.compile`` when ``TRAIN.COMPILE`` is set (and something
        trains), else ``model``. The compiled module shares the parameters; only the training
        forward uses it, so evaluation and checkpoints are untouched."""
        train = self.cfg.TRAIN
        if not train.COMPILE or self.optim is None:
            return model
        backends = torch.compiler.list_backends(exclude_tags=())
        if train.COMPILE_BACKEND not in backends:
            raise ValueError(f"TRAIN.COMPILE_BACKEND {train.COMPILE_BACKEND!r} is not a torch.compile backend; "
                             f"available: {', '.join(sorted(backends))}")
        print(f"Compiling the training forward with torch.compile (backend {train.COMPILE_BACKEND}); "
              "the first step pays the compilation")
        return torch.compile(model, backend=train.COMPILE_BACKEND)

    def wrap_for_data_parallel(self, model):
        """The module the training step calls: ``model`` itself, or, under torchrun and
        when something trains, ``model`` wrapped in DistributedDataParallel.

        The whole prompted CLIP is wrapped, not the prompt learner alone: its forward is
        the one thing every method runs per step (CoCoOp feeds image features to its
        learner instead of calling it), and DDP's reducer only handles the parameters
        that require grad, i.e. exactly the prompt learner's, whose gradients it averages
        over the ranks. Evaluation and checkpoints keep using the unwrapped modules, so
        saved keys never get a "module." prefix. Every method here uses all its trainable
        tensors in every step, so DDP's default ``find_unused_parameters=False`` holds (DDP
        names the parameters if a new method breaks that).
        """
        if not dist_utils.is_distributed() or self.optim is None:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # The frozen CLIP is read from the same file on every rank: keep DDP from
        # broadcasting it (hundreds of MB for ViT-B/16). The prompt learner's tensors are
        # still broadcast from rank 0, so all ranks start from identical prompts.
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        frozen += [n for n, _ in model.named_buffers() if n.startswith("clip_model.") or ".clip_model." in n]
        ignore = getattr(DistributedDataParallel, "_set_params_and_buffers_to_ignore_for_model", None)
        if ignore is not None:
            ignore(model, frozen)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Buffers are constants derived from CLIP and the class names: synced once at
        # construction like the parameters, never per step. (Newer torch renamed the flag.)
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
            no_step_sync = {"forward_sync_buffers": False}
        else:
            no_step_sync = {"broadcast_buffers": False}
        return DistributedDataParallel(model, device_ids=device_ids, **no_step_sync)

    # ------------------------------------------------------------- training
    def compute_loss(self, output, label):
        """Training objective (cross-entropy on the class logits)."""
        return F.cross_entropy(output, label)

    def loss_terms(self, output):
        """Extra numbers for the progress line (a regularizer's loss terms); none by default."""
        return {}

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            # several augmented views (DATALOADER.K_TRANSFORMS > 1) are passed as positional inputs
            output = self.train_model(*image) if isinstance(image, tuple) else self.train_model(image)
            loss = self.compute_loss(output, label)
        summary = {"loss": loss.item(), "acc": compute_accuracy(logits_of(output), label)[0].item()}
        summary.update(self.loss_terms(output))
        if dist_utils.is_distributed():
            loss = self.share_batch_across_ranks(loss, summary, label.shape[0])
        if self.scaler is not None:
            self.detect_anomaly(loss)
            self.optim.zero_grad()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def share_batch_across_ranks(self, loss, summary, n_local):
        """Multi-process step bookkeeping, with one small all-reduce before the backward.

        * ``summary`` becomes the global batch's loss and accuracy (image-weighted means
          over the ranks), so rank 0 logs what a single process would have.
        * A non-finite loss on any rank makes the global loss non-finite, so every rank
          raises here together, before DDP's gradient all-reduce could wait for a rank
          that stopped.
        * Returns the loss to back-propagate: scaled when the global batch splits
          unevenly over the ranks (a last partial batch), so that DDP's gradient average
          equals the gradient of the global-batch mean loss
          (see ``dist_utils.global_batch_loss_scale``).
        """
        local = torch.tensor([n_local, summary["loss"] * n_local, summary["acc"] * n_local], dtype=torch.float64)
        n_global, loss_sum, acc_sum = dist_utils.all_reduce(local).tolist()
        summary["loss"], summary["acc"] = loss_sum / n_global, acc_sum / n_global
        self.detect_anomaly(torch.tensor(summary["loss"]))
        scale = dist_utils.global_batch_loss_scale(n_local, int(n_global))
        # Even splits (every full batch) keep the loss untouched, bit for bit.
        return loss if scale == 1.0 else loss * scale

    def parse_batch_train(self, batch):
        image = batch["img"]
        if isinstance(image, (list, tuple)):  # DATALOADER.K_TRANSFORMS views of each image
            return tuple(view.to(self.device) for view in image), batch["label"].to(self.device)
        return image.to(self.device), batch["label"].to(self.device)

    def state_dict(self):
        state = super().state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    # ----------------------------------------------------------- evaluation
    def test(self, split=None):
        """Evaluate on ``split``; with the frozen-feature cache when the image features are the
        frozen CLIP's own (no vision prompts, no hook; see trainers/feature_cache.py)."""
        plan = self.feature_cache_plan(split)
        if plan is None:
            return super().test(split)
        split, key, parts, labels, expected = plan
        cache = FeatureCache(self.cfg.TEST.FEATURE_CACHE_DIR or default_cache_dir())
        features = cache.load(key, labels)
        if features is not None:
            print(f"Feature cache: image features of the {split} set read from {cache.path(key)}")
            return self.test_from_features(split, features, labels)
        self.model.recorded_image_features = []
        try:
            result = super().test(split)
            recorded = self.model.recorded_image_features
        finally:
            self.model.recorded_image_features = None
        if recorded and sum(f.shape[0] for f in recorded) == expected:
            path = cache.save(key, torch.cat(recorded), labels, parts)
            print(f"Feature cache: image features of the {split} set written to {path}")
        return result

    def feature_cache_plan(self, split):
        """``(split, key, key parts, labels, n images)`` when this evaluation may use the cache,
        else None: the cache is on, one process, and the images meet no prompt or hook."""
        if not self.cfg.TEST.FEATURE_CACHE or dist_utils.is_distributed():
            return None
        if type(self.model) is not PromptedCLIP or self.model.TEXT_DEPENDS_ON_IMAGE:
            return None
        with torch.no_grad():
            prompts = self.model.prompt_learner()
        if prompts.vision_prompts is not None or prompts.vision_hook is not None:
            return None
        split, loader = self.split_loader(split)
        items = loader.dataset.data_source
        if not hasattr(self, "_image_encoder_digest"):
            self._image_encoder_digest = weights_digest(self.model.clip_model.visual)
        cfg = self.cfg
        parts = {"weights": self._image_encoder_digest, "dataset": cfg.DATASET.NAME, "split": split,
                 "images": image_list_digest(items), "transform": repr(loader.dataset.transform),
                 "input": {k: str(v) for k, v in cfg.INPUT.items()}, "precision": self.precision,
                 "device": self.device.type, "torch": str(torch.__version__)}
        labels = torch.tensor([item.label for item in items], dtype=torch.int64)
        return split, cache_key(parts), parts, labels, len(items)

    def test_from_features(self, split, features, labels):
        """The evaluation of ``split`` from cached image features: the same logits, no image read."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        print(f"Evaluate on the *{split}* set")
        batch = self.cfg.DATALOADER.TEST.BATCH_SIZE  # the loader's batches: the same kernels, the same bits
        with torch.no_grad(), self.evaluation_context():
            for start in range(0, features.shape[0], batch):
                fault_point("eval_batch")  # an evaluation batch all the same (the reliability tests count them)
                feats = features[start:start + batch].to(self.device)
                output = self.model.logits_from_image_features(feats).float()
                self.evaluator.process(output, labels[start:start + batch].to(self.device))
        return self.finish_test(split)

    @contextlib.contextmanager
    def evaluation_context(self):
        with self.autocast(), self.model.cached_text_features():
            yield

    def model_inference(self, image):
        with self.autocast():
            return self.model(image).float()

    # ---------------------------------------------------------- checkpoints
    def map_checkpoint_keys(self, state_dict):
        """Map an official checkpoint's keys to ours (identity by default)."""
        return state_dict

    def _load_weights(self, name, state_dict, path):
        self._load_weights_into(self._models[name], state_dict, path)

    def _load_weights_into(self, model, state_dict, path):
        """Strictly load ``state_dict`` into ``model``; a mismatch names the keys."""
        state_dict = self.map_checkpoint_keys(dict(strip_module_prefix(state_dict)))
        state_dict = {
            k: v for k, v in state_dict.items()
            if k.rsplit(".", 1)[-1] not in self.IGNORED_CHECKPOINT_KEYS
            and not k.startswith(self.FROZEN_KEY_PREFIXES)
        }
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        shape = sorted(k for k in set(expected) & set(state_dict)
                       if tuple(expected[k].shape) != tuple(state_dict[k].shape))
        if missing or unexpected or shape:
            parts = []
            if missing:
                parts.append(f"missing keys {missing[:5]}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected[:5]}")
            if shape:
                parts.append("shape mismatch " + ", ".join(
                    f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in shape[:5]))
            raise RuntimeError(
                f"checkpoint {path} does not fit trainer {self.cfg.TRAINER.NAME} "
                f"({self.num_classes} classes): " + "; ".join(parts)
            )
        model.load_state_dict(state_dict)
