"""Cost of every method's training step and evaluation against its floor.

A prompt learner trains a few thousand values around a frozen CLIP, so the least a training
step can cost is the frozen CLIP's own forward and backward on the same tokens. This script
measures, in one process, for every trainer on a chosen backbone shape (random weights, so it
runs anywhere):

* ``step_s``: forward + backward + optimizer step of the real trainer (``forward_backward``),
  median over ``--steps`` steps after ``--warmup``;
* ``floor_s``: the same CLIP forward + backward with the same tokens and no prompt machinery:
  fixed leaf tensors stand in for the prompts (text context after SOS, vision tokens after the
  patches), no hooks, and the backward runs through a tower only when the method trains
  something in it (the trainer's own image / text features tell which); for a regularizer
  (PromptSRC, CoPrompt over any base) the floor also runs the frozen image encoder once without
  gradients, the forward its losses compare against;
* ``ratio``: step / floor, the median over adjacent (step, floor) pairs, with the quartiles of
  the pair ratios in ``ratio_iqr`` (single steps vary by several percent on a shared machine;
  the two runs of a pair share its conditions);
* ``flop_ratio``: the same ratio in floating-point operations (FlopCounterMode: exact, immune
  to the machine's load, but blind to element-wise work), and ``written_ratio``: in tensor
  elements written by all operations that are not views (element-wise work included);
* ``saved_mb``/``floor_saved_mb``/``saved_ratio``: the activations autograd keeps for the
  backward (distinct saved storages other than weights and inputs): exact, and the bulk of what
  a step adds to memory;
* ``peak_mem_mb``/``floor_mem_mb``: memory a step adds on top of what was allocated before it
  (CUDA: max allocated; CPU: the peak resident set, reset through /proc/self/clear_refs after
  returning freed heap pages with malloc_trim), and ``mem_ratio``;
* ``ckpt_mb``: size of the checkpoint the trainer writes, beside ``official_ckpt_mb``, the size
  the official repository's checkpoint layout gives for the same model (computed, see
  docs/PERFORMANCE.md);
* evaluation on a 100- and a 1000-class label space: seconds per test batch inside an
  evaluation pass (class text features built once when the pass starts) against the frozen
  image encoder alone on the same images and tokens (``eval`` ratios), plus the one-off cost of
  the class text features and images/s; for methods whose test images meet no prompt, a batch
  from the frozen-feature cache against the image encoder (``cached_ratio``) and whether its
  logits equal the normal evaluation's (``cached_logits_identical``).

Prints a markdown table; ``--json`` writes::

    {"trainers": {NAME: {"step_s", "floor_s", "ratio", "peak_mem_mb", "ckpt_mb", ...}},
     "eval": {NAME: {"100": ratio, "1000": ratio}}, "eval_detail": {...}, "setup": {...}}

Usage: python benchmarks/bench.py [--shape vit_b16|tiny|openclip_vit_b16|siglip_vit_b16|siglip_tiny] [--batch 4]
       [--trainers coop maple ...]
       [--device cpu|cuda] [--prec fp32|bf16|amp|fp16] [--json out.json]
"""
import argparse
import contextlib
import ctypes
import os
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import trainers  # noqa: E402  (registers the trainers)
from clip.model import CLIP  # noqa: E402
from dassl.engine import TRAINER_REGISTRY  # noqa: E402
from dassl.utils import write_json  # noqa: E402
from trainers.base import encode_class_texts  # noqa: E402

# Backbone shapes (CLIP constructor arguments). vit_b16 is OpenAI's ViT-B/16; tiny is the test
# suite's 12-layer miniature (deep prompts of depth 9 still fit).
SHAPES = {
    "vit_b16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                    vision_patch_size=16, context_length=77, vocab_size=49408,
                    transformer_width=512, transformer_heads=8, transformer_layers=12),
    "tiny": dict(embed_dim=32, image_resolution=32, vision_layers=12, vision_width=128,
                 vision_patch_size=8, context_length=77, vocab_size=49408,
                 transformer_width=64, transformer_heads=1, transformer_layers=12),
}

# Other CLIP families at the same scale: open_clip's architecture (its config, through clip.openclip)
# with random weights. siglip_tiny is the SigLIP counterpart of tiny.
OPENCLIP_SHAPES = {
    "openclip_vit_b16": ("ViT-B-16", {}),
    "siglip_vit_b16": ("ViT-B-16-SigLIP", {}),
    "siglip_tiny": ("ViT-B-16-SigLIP", dict(embed_dim=64, image_resolution=32, vision_layers=12, vision_width=64,
                                            vision_patch_size=8, vision_heads=1, context_length=32,
                                            transformer_width=64, transformer_heads=1, transformer_layers=12)),
}


def shape_arguments(shape_name):
    """The :class:`CLIP` constructor arguments of a benchmark shape."""
    if shape_name in SHAPES:
        return SHAPES[shape_name]
    from clip import openclip

    model, overrides = OPENCLIP_SHAPES[shape_name]
    return dict(openclip.clip_arguments(*openclip.read_config(model)), **overrides)


class SyntheticTokenizer:
    """Stands in for a Hugging Face tokenizer (SigLIP's) the benchmark cannot download: OpenAI's BPE
    ids without the start token, folded into the model's vocabulary, padded to the context length.
    The sequences have the real length and pooling, which is all the timings depend on."""

    prefix_length = 0

    def __init__(self, context_length, vocab_size):
        from clip.tokenizer import BPETextTokenizer

        self.bpe, self.context_length, self.vocab_size = BPETextTokenizer(context_length + 1), context_length, vocab_size

    def tokenize(self, texts):
        return self.bpe.tokenize(texts)[:, 1:] % self.vocab_size

    def encode(self, text):
        return [i % self.vocab_size for i in self.bpe.encode(text)]


# Method (the scripts' name) -> trainer and the config its base-to-novel script trains with.
METHODS = {
    "zsclip": ("ZeroshotCLIP", "CoOp/vit_b16.yaml"),
    "coop": ("CoOp", "CoOp/vit_b16_ep100.yaml"),
    "cocoop": ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"),
    "vpt": ("VPT", "VPT/vit_b16_c2_ep5_batch4_4.yaml"),
    "language-prompting": ("IVLP", "IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only.yaml"),
    "independent-vlp": ("IVLP", "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml"),
    "maple": ("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"),
    "bmip": ("BMIP", "BMIP/BMIP_ctx2_dp9_lr2.yaml"),
    "bloom": ("Bloom", "Bloom/vit_b16_c2_ep5_batch4_2ctx.yaml"),
    # regularizers over a base (trainers/composition.py): the floor adds the frozen image forward
    "promptsrc": ("PromptSRC", "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"),
    "promptsrc-maple": ("PromptSRC_MaPLe", "PromptSRC_MaPLe/vit_b16_c2_ep20_batch4_2ctx.yaml"),
    "promptsrc-bmip": ("PromptSRC_BMIP", "PromptSRC_BMIP/vit_bitp_ctx4_ep20TT_adam_PromptSRC.yaml"),
    "promptsrc-bloom": ("PromptSRC_Bloom", "PromptSRC_Bloom/vit_b16_c2_ep20_batch4_2ctx.yaml"),
    "coprompt": ("CoPrompt", "CoPrompt/coprompt.yaml"),
    "coprompt-bmip": ("CoPrompt_BMIP", "CoPrompt_BMIP/vit_b16_c2_ep8_batch4_2ctx_randaug.yaml"),
    "coprompt-bloom": ("CoPrompt_Bloom", "CoPrompt_Bloom/vit_b16_c2_ep8_batch4_2ctx_randaug.yaml"),
}

# Official repositories' checkpoint layout per method: "prompt_learner" saves the prompt learner
# with its class-token buffers (CoOp, CoCoOp); "whole_model" registers the whole CustomCLIP, so
# the frozen encoders are saved too (multimodal-prompt-learning's VPT/IVLP/MaPLe, official BMIP).
# Both in fp16, their default precision. Bloom has no official code.
OFFICIAL_LAYOUT = {"coop": "prompt_learner", "cocoop": "prompt_learner", "vpt": "whole_model",
                   "language-prompting": "whole_model", "independent-vlp": "whole_model",
                   "maple": "whole_model", "bmip": "whole_model"}

# Words for synthetic class names of ImageNet-like token lengths (1-3 words).
_WORDS = ("red wooden tabby garden sports spotted mountain river golden electric paper glass "
          "window table lamp dog cat bird truck flower fish tree bridge guitar shoe boat clock "
          "kite snake beetle orange castle tower engine camera chair violin owl ferret canoe "
          "plate mushroom panda rocket crane heron lizard turtle vase barrel basket helmet").split()


def class_names(n):
    """``n`` distinct deterministic class names of one to three words."""
    names, w = [], len(_WORDS)
    for i in range(n):
        words = [_WORDS[i % w]]
        if i >= w:
            words.append(_WORDS[(i // w + 7 * i) % w])
        if i >= w * w // 4:
            words.append(_WORDS[(i // 7) % w])
        names.append(" ".join(words) + f" {i}")
    return names


# ------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory a block adds on top of what is allocated when it starts, in MB.

    CUDA: ``max_memory_allocated`` after resetting its peak. CPU: the resident-set high-water
    mark (VmHWM), reset through ``/proc/self/clear_refs`` after ``malloc_trim`` returned the
    freed heap pages, so RSS is close to what is live; None where /proc is not available.
    """

    def __init__(self, device):
        self.device = device
        self._libc = None
        if device.type == "cpu" and platform.system() == "Linux":
            with contextlib.suppress(OSError):
                self._libc = ctypes.CDLL("libc.so.6")

    @staticmethod
    def _status_kb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def available(self):
        if self.device.type == "cuda":
            return True
        return self._libc is not None and os.access("/proc/self/clear_refs", os.W_OK)

    @contextlib.contextmanager
    def measure(self, out):
        """Run the block and store its added peak (MB) in ``out["mb"]`` (None if unknown)."""
        out["mb"] = None
        if not self.available():
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            yield
            torch.cuda.synchronize(self.device)
            out["mb"] = (torch.cuda.max_memory_allocated(self.device) - base) / 2 ** 20
            return
        self._libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        base = self._status_kb("VmRSS")
        yield
        out["mb"] = (self._status_kb("VmHWM") - base) / 1024


# ------------------------------------------------------------------------------ building
def build_cfg(method, shape_name, batch, prec, device, opts=()):
    """The config ``method``'s base-to-novel script trains with, adapted to the benchmark
    (``opts``: further KEY VALUE pairs)."""
    import train  # the CLI's own config building (defaults + trainer nodes + file + opts)

    trainer_name, config = METHODS[method]
    node = TRAINER_REGISTRY.get(trainer_name).CFG_NODE
    res = shape_arguments(shape_name)["image_resolution"]
    if node == "CoPrompt":  # its class descriptions, for the benchmark's synthetic class names
        opts = ("TRAINER.CoPrompt.DESCRIPTIONS", synthetic_descriptions(), *opts)
    args = train.build_parser().parse_args([
        "--trainer", trainer_name, "--config-file", osp.join(REPO_ROOT, "configs", "trainers", config),
        "--device", str(device),
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch), f"TRAINER.{node}.PREC", prec,
        "INPUT.SIZE", f"({res}, {res})", "MODEL.BACKBONE.NAME", f"random-{shape_name}",
        "OPTIM.MAX_EPOCH", "10", *map(str, opts),
    ])
    return train.setup_cfg(args)


def build_trainer(method, cfg, classnames, clip_model):
    """``method``'s real trainer on ``clip_model`` with ``classnames``, without a dataset."""
    base = TRAINER_REGISTRY.get(METHODS[method][0])
    lab2cname = dict(enumerate(classnames))

    class BenchTrainer(base):
        def build_data_loader(self):
            self.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=classnames))
            self.train_loader_x = self.train_loader_u = self.val_loader = self.test_loader = None
            self.num_classes, self.num_source_domains, self.lab2cname = len(classnames), 1, lab2cname

        def load_clip(self):
            return clip_model

    with contextlib.redirect_stdout(open(os.devnull, "w")):
        trainer = BenchTrainer(cfg)
        if hasattr(trainer, "build_targets"):  # a regularizer's frozen targets, built once per run
            trainer.build_targets()
    trainer.batch_idx, trainer.num_batches = 0, 10 ** 9  # never the epoch's last batch
    return trainer


def is_regularized(trainer):
    """Whether the trainer's step also runs the frozen CLIP's image encoder (a regularizer)."""
    from trainers.composition import Regularizer

    return isinstance(trainer, Regularizer)


_DESCRIPTIONS = {}


def synthetic_descriptions(n_classes=1000, per_class=50):
    """A CoPrompt description file covering :func:`class_names` up to ``n_classes`` (``per_class``
    sentences each, the official files' usual count), written once per process; its path."""
    import json

    if n_classes not in _DESCRIPTIONS:
        handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({name: [f"a photo of a {name}, variant {j}." for j in range(per_class)]
                   for name in class_names(n_classes)}, handle)
        handle.close()
        _DESCRIPTIONS[n_classes] = handle.name
    return _DESCRIPTIONS[n_classes]


def make_clip(shape_name, device):
    """A frozen CLIP of ``shape_name`` with random weights (fp32)."""
    torch.manual_seed(0)
    arguments = shape_arguments(shape_name)
    model = CLIP(**arguments).to(device).eval()
    if not arguments.get("text_causal", True):  # SigLIP's text: its tokenizer's layout, synthetic ids
        model.tokenizer = SyntheticTokenizer(arguments["context_length"], arguments["vocab_size"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def checkpoint_mb(trainer):
    """Size in MB of the checkpoint ``trainer`` writes (its model.pth.tar-1)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(open(os.devnull, "w")):
        trainer.save_model(0, tmp)
        return sum(osp.getsize(osp.join(root, f)) for root, _, files in os.walk(tmp) for f in files) / 2 ** 20


def official_checkpoint_mb(method, trainer, clip_model):
    """Size the official repository's checkpoint of this model would have, in MB (fp16 values):
    the prompt learner's trainable values and its per-class token buffers (prefix + suffix of the
    77-token prompts) and, for "whole_model" layouts, every frozen encoder weight but the token
    embedding table (their CustomCLIP holds no token embedding)."""
    layout = OFFICIAL_LAYOUT.get(method)
    if layout is None:
        return None
    learner = trainer.prompt_learner
    values = sum(p.numel() for p in learner.parameters() if p.requires_grad)
    template = getattr(learner, "template", None)
    if template is not None:
        n_cls, n_ctx = template.n_cls, template.n_ctx
        values += n_cls * (clip_model.context_length - n_ctx) * clip_model.text_width
    if layout == "whole_model":
        values += sum(t.numel() for name, t in clip_model.state_dict().items()
                      if not name.startswith("token_embedding"))
    return values * 2 / 2 ** 20


# ------------------------------------------------------------------------------- floors
class TrainingFloor:
    """The frozen CLIP's forward + backward on the tokens a trainer's step processes.

    Built from the trainer's own prompts: the text sequences (cut after the last EOT, as the
    trainers encode them) and the number of vision prompt tokens. Leaf tensors take the prompts'
    places; a tower is back-propagated through only when the trainer's features from it carry a
    gradient. Text that needs no gradient and does not depend on the image is encoded once, as the
    trainers do.
    """

    def __init__(self, trainer, images, labels):
        model = trainer.model
        self.clip = model.clip_model
        self.trainer = trainer
        self.labels = labels
        with trainer.autocast():
            prompts = model.prompt_learner() if not trainer.model.TEXT_DEPENDS_ON_IMAGE else None
            image_grad, text_grad = self._feature_grads(trainer, images)
        self.per_image_text = trainer.model.TEXT_DEPENDS_ON_IMAGE
        if self.per_image_text:
            template = model.prompt_learner.template
            length = int(template.eot_indices.max()) + 1
            ctx = torch.zeros(template.n_cls, length, self.clip.text_width, device=images.device)
            self.text_rows = ctx.repeat(images.shape[0], 1, 1)
            self.eot = template.eot_indices.repeat(images.shape[0]).to(images.device)
            vision_tokens = 0
        else:
            length = int(prompts.eot_indices.max()) + 1
            self.text_rows = prompts.text_embeddings[:, :length].detach().float().clone()
            self.eot = prompts.eot_indices
            vision_tokens = 0 if prompts.vision_prompts is None else prompts.vision_prompts.shape[-2]
        self.text_rows.requires_grad_(text_grad)
        self.vision = None
        if vision_tokens:
            self.vision = torch.zeros(vision_tokens, self.clip.vision_width, device=images.device,
                                      requires_grad=image_grad)
        self.static_text = None
        if not text_grad and not self.per_image_text:
            with torch.no_grad(), trainer.autocast():
                self.static_text = encode_class_texts(self.clip, self.text_rows, self.eot)
        leaves = [t for t in (self.text_rows, self.vision) if t is not None and t.requires_grad]
        self.optim = torch.optim.SGD(leaves, lr=1e-3, momentum=0.9) if leaves else None
        # a regularizer's step also encodes the images (or their second view) with the frozen CLIP
        self.frozen_image_pass = is_regularized(trainer)

    @staticmethod
    def _feature_grads(trainer, images):
        """Whether the trainer's image and text features carry a gradient (i.e. which towers
        its backward runs through)."""
        model = trainer.model
        if model.TEXT_DEPENDS_ON_IMAGE:
            return False, True
        prompts = model.prompt_learner()
        image = model.encode_image(images[:1], prompts)
        text = model.encode_text(prompts)
        return image.requires_grad, text.requires_grad

    def step(self, images):
        with self.trainer.autocast():
            if self.frozen_image_pass:
                with torch.no_grad():
                    self.clip.encode_image(images)
            img = F.normalize(self.clip.encode_image(images, prompts=self.vision), dim=-1)
            if self.static_text is not None:
                text = self.static_text
            else:
                text = encode_class_texts(self.clip, self.text_rows, self.eot)
            scale = self.clip.logit_scale.exp()
            if self.per_image_text:
                text = text.view(img.shape[0], -1, text.shape[-1])
                logits = scale * torch.einsum("be,bce->bc", img, text.type(img.dtype))
            else:
                logits = scale * img @ text.t().type(img.dtype)
            loss = F.cross_entropy(logits, self.labels)
        if self.optim is not None:
            self.optim.zero_grad()
            loss.backward()
            self.optim.step()
        return loss.item()


def image_encoder_only(clip_model, images, vision_tokens, autocast):
    """The frozen image encoder on ``images`` plus ``vision_tokens`` fixed tokens."""
    prompts = None
    if vision_tokens:
        prompts = torch.zeros(vision_tokens, clip_model.vision_width, device=images.device)
    with torch.no_grad(), autocast():
        return clip_model.encode_image(images, prompts=prompts)


def vision_tokens_of(trainer):
    """Number of prompt tokens the trainer appends to the image tokens at the input."""
    if trainer.model.TEXT_DEPENDS_ON_IMAGE:
        return 0
    with torch.no_grad():
        prompts = trainer.model.prompt_learner()
    return 0 if prompts.vision_prompts is None else prompts.vision_prompts.shape[-2]


# ----------------------------------------------------------------------------- measuring
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """Seconds ``fn()`` takes (device work included)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def _cpu_attention_flops(query, key, value, *args, **kwargs):
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(grad_out, query, key, value, *args, **kwargs):
    return sdpa_backward_flop_count(grad_out, query, key, value)


# FlopCounterMode knows the CUDA attention kernels but not the CPU one (it would count fused
# attention as 0 FLOPs); count it as the others: both matrix products, forward and backward.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


class ExactWork(TorchDispatchMode):
    """Load-independent counts of what ``fn()`` computes and keeps, for a step and its floor.

    * ``gflop``: floating-point operations as PyTorch's FlopCounterMode counts them (matrix
      products, convolutions and attention, forward and backward; blind to element-wise work);
    * ``written_m``: millions of tensor elements written by every operation that is not a view
      (element-wise work, softmax, normalisation, concatenation and copies included);
    * ``saved_mb``: the activations autograd keeps for the backward: the distinct storages the
      forward saves, less those of ``exclude`` (model weights and buffers, the inputs).
    """

    def __init__(self, exclude=()):
        super().__init__()
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.written = 0
        self.saved = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            self.written += sum(t.numel() for t in torch.utils._pytree.tree_leaves(out)
                                if isinstance(t, torch.Tensor))
        return out

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.exclude:
            self.saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    def measure(self, fn):
        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as flops, \
                torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t), self:
            fn()
        return {"gflop": flops.get_total_flops() / 1e9, "written_m": self.written / 1e6,
                "saved_mb": sum(self.saved.values()) / 2 ** 20}


def exact_work(fn, exclude=()):
    """:class:`ExactWork` counts of one call of ``fn``."""
    return ExactWork(exclude).measure(fn)


def paired_times(measured, reference, pairs, warmup, device):
    """Time ``measured()`` and ``reference()`` in ``warmup + pairs`` adjacent pairs (alternating
    which runs first) and summarise the timed pairs.

    On a shared machine single runs vary by several percent; the two runs of a pair see the same
    conditions, so the median of the per-pair ratios is a steadier estimate of the true ratio than
    the ratio of separate medians. Returns (median measured s, median reference s, median ratio,
    [first quartile, third quartile] of the ratios).
    """
    measured_s, reference_s = [], []
    for i in range(warmup + pairs):
        pair = [(measured, measured_s), (reference, reference_s)]
        for fn, times in (pair if i % 2 else pair[::-1]):
            t = timed(fn, device)
            if i >= warmup:
                times.append(t)
    ratios = sorted(m / r for m, r in zip(measured_s, reference_s))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return (statistics.median(measured_s), statistics.median(reference_s), statistics.median(ratios),
            [round(quartiles[0], 4), round(quartiles[2], 4)])


def measure_training(method, trainer, clip_model, args, device, memory):
    """Training step vs floor for one trainer: times, memory, checkpoint sizes."""
    gen = torch.Generator().manual_seed(1)
    res = clip_model.image_resolution
    images = torch.randn(args.batch, 3, res, res, generator=gen).to(device)
    labels = torch.randint(0, trainer.num_classes, (args.batch,), generator=gen).to(device)
    views = trainer.cfg.DATALOADER.K_TRANSFORMS
    batch = {"img": images if views == 1 else [images] * views, "label": labels}
    floor = TrainingFloor(trainer, images, labels)
    trainer.set_model_mode("train")

    def trainer_step():
        trainer.forward_backward(batch)

    def floor_step():
        floor.step(images)

    step_s, floor_s, ratio, ratio_iqr = paired_times(trainer_step, floor_step, args.steps, args.warmup, device)
    # Peak memory: the median of a few alternating steps (allocator noise is ~2% of a step's peak).
    trainer_peaks, floor_peaks = [], []
    for _ in range(args.memory_steps):
        for fn, peaks in ((floor_step, floor_peaks), (trainer_step, trainer_peaks)):
            out = {}
            with memory.measure(out):
                fn()
            peaks.append(out["mb"])
    trainer_mem = {"mb": None if None in trainer_peaks else statistics.median(trainer_peaks)}
    floor_mem = {"mb": None if None in floor_peaks else statistics.median(floor_peaks)}
    # Exact counts; weights, buffers and inputs are not activations.
    exclude = [*trainer.model.parameters(), *trainer.model.buffers(), images,
               *(t for t in (floor.text_rows, floor.vision) if t is not None)]
    step_work, floor_work = exact_work(trainer_step, exclude), exact_work(floor_step, exclude)
    row = {
        "step_s": round(step_s, 5),
        "floor_s": round(floor_s, 5),
        "ratio": round(ratio, 4),
        "ratio_iqr": ratio_iqr,
        "step_gflop": round(step_work["gflop"], 3),
        "floor_gflop": round(floor_work["gflop"], 3),
        "flop_ratio": round(step_work["gflop"] / floor_work["gflop"], 5),
        "written_ratio": round(step_work["written_m"] / floor_work["written_m"], 5),
        "saved_mb": round(step_work["saved_mb"], 2),
        "floor_saved_mb": round(floor_work["saved_mb"], 2),
        "saved_ratio": (round(step_work["saved_mb"] / floor_work["saved_mb"], 5)
                        if floor_work["saved_mb"] else None),
        "peak_mem_mb": None if trainer_mem["mb"] is None else round(trainer_mem["mb"], 1),
        "floor_mem_mb": None if floor_mem["mb"] is None else round(floor_mem["mb"], 1),
        "mem_ratio": (round(trainer_mem["mb"] / floor_mem["mb"], 4)
                      if trainer_mem["mb"] and floor_mem["mb"] else None),
        "ckpt_mb": round(checkpoint_mb(trainer), 4),
        "official_ckpt_mb": None,
        "trainable_params": sum(p.numel() for p in trainer._models[trainer.get_model_names()[0]].parameters()
                                if p.requires_grad),
        "backward_through": [t for t, leaf in (("image", floor.vision), ("text", floor.text_rows))
                             if leaf is not None and leaf.requires_grad],
        # tokens per text sequence (cut after the last EOT; the official code runs 77) and
        # prompt tokens appended to the image tokens
        "text_tokens": int(floor.text_rows.shape[1]),
        "vision_prompt_tokens": 0 if floor.vision is None else int(floor.vision.shape[0]),
    }
    official = official_checkpoint_mb(method, trainer, clip_model)
    row["official_ckpt_mb"] = None if official is None else round(official, 2)
    return row


def measure_evaluation(trainer, clip_model, args, device):
    """Per-batch evaluation cost inside one evaluation pass (class text features built once
    when it starts) vs the frozen image encoder alone on the same images and tokens."""
    res = clip_model.image_resolution
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(args.eval_batch, 3, res, res, generator=gen).to(device)
    trainer.set_model_mode("eval")
    tokens = vision_tokens_of(trainer)
    # Text that depends on the image makes every batch cost (images x classes) text encodings:
    # one pair says enough.
    pairs, warmup = (1, 0) if trainer.model.TEXT_DEPENDS_ON_IMAGE else (args.eval_batches, 1)
    with torch.no_grad():
        context = trainer.evaluation_context()
        text_once = timed(context.__enter__, device)
        try:
            batch_s, image_s, ratio, ratio_iqr = paired_times(
                lambda: trainer.model_inference(images),
                lambda: image_encoder_only(clip_model, images, tokens, trainer.autocast),
                pairs, warmup, device)
            work = exact_work(lambda: trainer.model_inference(images))
            image_work = exact_work(lambda: image_encoder_only(clip_model, images, tokens, trainer.autocast))
        finally:
            context.__exit__(None, None, None)
    cached = measure_cached_evaluation(trainer, clip_model, images, args, device)
    return {
        **cached,
        "ratio": round(ratio, 4),
        "ratio_iqr": ratio_iqr,
        "flop_ratio": round(work["gflop"] / image_work["gflop"], 5),
        "written_ratio": round(work["written_m"] / image_work["written_m"], 5),
        "batch_s": round(batch_s, 5),
        "image_only_batch_s": round(image_s, 5),
        "text_once_s": round(text_once, 5),
        "images_per_s": round(args.eval_batch / batch_s, 2),
        # the one-off text cost expressed in test images of this trainer
        "text_once_in_images": round(text_once / batch_s * args.eval_batch, 1),
    }


def measure_cached_evaluation(trainer, clip_model, images, args, device):
    """For a method whose test images meet no prompt (the frozen-feature cache applies): a test
    batch from cached image features vs the frozen image encoder on the images, and whether its
    logits equal those of the normal evaluation bit for bit. Empty for other methods."""
    if type(trainer.model).__name__ != "PromptedCLIP":
        return {}
    with torch.no_grad():
        prompts = trainer.model.prompt_learner()
    if prompts.vision_prompts is not None or prompts.vision_hook is not None or trainer.model.TEXT_DEPENDS_ON_IMAGE:
        return {}
    with torch.no_grad():
        context = trainer.evaluation_context()
        context.__enter__()
        try:
            trainer.model.recorded_image_features = []
            direct = trainer.model_inference(images)
            features = trainer.model.recorded_image_features[0]
            trainer.model.recorded_image_features = None
            cached = trainer.model.logits_from_image_features(features).float()
            batch_s, image_s, ratio, ratio_iqr = paired_times(
                lambda: trainer.model.logits_from_image_features(features),
                lambda: image_encoder_only(clip_model, images, 0, trainer.autocast),
                args.eval_batches, 1, device)
        finally:
            trainer.model.recorded_image_features = None
            context.__exit__(None, None, None)
    return {"cached_ratio": round(ratio, 5), "cached_ratio_iqr": ratio_iqr, "cached_batch_s": round(batch_s, 6),
            "cached_logits_identical": bool(torch.equal(direct, cached))}


# ---------------------------------------------------------------------------------- main
def markdown_table(results, methods):
    """The results as one markdown table."""
    header = ("| method | step (s) | floor (s) | step/floor [quartiles] | FLOP step/floor | written step/floor "
              "| saved activations step/floor | mem/floor | ckpt (MB) "
              "| official ckpt (MB) | eval/image-only 100 cls | eval/image-only 1000 cls | FLOP eval/image-only 1000 cls "
              "| images/s 1000 cls | cached eval/image-only 1000 cls |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    for method in methods:
        tr = results["trainers"].get(method, {})
        ev = results["eval_detail"].get(method, {})
        lines.append("| " + " | ".join([
            method, fmt(tr.get("step_s"), ".3f"), fmt(tr.get("floor_s"), ".3f"),
            "n/a" if tr.get("ratio") is None else
            f"{tr['ratio']:.3f} [{tr['ratio_iqr'][0]:.3f}, {tr['ratio_iqr'][1]:.3f}]",
            fmt(tr.get("flop_ratio"), ".4f"), fmt(tr.get("written_ratio"), ".4f"), fmt(tr.get("saved_ratio"), ".4f"),
            fmt(tr.get("mem_ratio"), ".3f"), fmt(tr.get("ckpt_mb"), ".3f"), fmt(tr.get("official_ckpt_mb"), ".1f"),
            fmt(ev.get("100", {}).get("ratio"), ".3f"), fmt(ev.get("1000", {}).get("ratio"), ".3f"),
            fmt(ev.get("1000", {}).get("flop_ratio"), ".4f"),
            fmt(ev.get("1000", {}).get("images_per_s"), ".1f"),
            fmt(ev.get("1000", {}).get("cached_ratio"), ".4f"),
        ]) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES) + sorted(OPENCLIP_SHAPES), default="vit_b16",
                        help="backbone shape, random weights (default: vit_b16)")
    parser.add_argument("--batch", type=int, default=4, help="training batch size (default: 4)")
    parser.add_argument("--trainers", nargs="+", default=["all"], metavar="METHOD",
                        help=f"methods to measure: all or some of {', '.join(METHODS)}")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed (trainer step, floor step) pairs (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed pairs first (default: 3)")
    parser.add_argument("--memory-steps", type=int, default=3,
                        help="steps whose peak memory is measured, median taken (default: 3)")
    parser.add_argument("--train-classes", type=int, default=50,
                        help="classes of the training label space (default: 50, a base half)")
    parser.add_argument("--eval-classes", type=int, nargs="+", default=[100, 1000],
                        help="label-space sizes for evaluation (default: 100 1000)")
    parser.add_argument("--eval-batch", type=int, default=8, help="images per test batch (default: 8)")
    parser.add_argument("--eval-batches", type=int, default=8,
                        help="timed (test batch, image-encoder batch) pairs (default: 8)")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation measurements")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--prec", choices=("fp32", "bf16", "amp", "fp16"), default="fp32",
                        help="TRAINER.<NAME>.PREC of every method (default: fp32)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    methods = list(METHODS) if args.trainers == ["all"] else args.trainers
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from all, {', '.join(METHODS)}")
    for name in ("batch", "steps", "memory_steps", "train_classes", "eval_batch", "eval_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if any(n < 2 for n in args.eval_classes):
        parser.error("--eval-classes must all be >= 2")
    args.methods = methods
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"bench.py: --device {args.device} was requested but CUDA is not available")
    memory = PeakMemory(device)
    clip_model = make_clip(args.shape, device)
    results = {"trainers": {}, "eval": {}, "eval_detail": {}, "setup": {
        "shape": args.shape, "batch": args.batch, "prec": args.prec, "device": str(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
        "warmup": args.warmup, "train_classes": args.train_classes, "eval_classes": args.eval_classes,
        "eval_batch": args.eval_batch, "memory": "cuda max allocated" if device.type == "cuda" else
        ("peak RSS added by one step" if memory.available() else "unavailable"),
        "cpu": platform.processor() or platform.machine(),
    }}
    for method in args.methods:
        started = time.time()
        opts = ()
        if method != "zsclip":
            cfg = build_cfg(method, args.shape, args.batch, args.prec, device, opts)
            trainer = build_trainer(method, cfg, class_names(args.train_classes), clip_model)
            results["trainers"][method] = measure_training(method, trainer, clip_model, args, device, memory)
            del trainer
        if not args.no_eval:
            results["eval"][method], results["eval_detail"][method] = {}, {}
            for n_cls in args.eval_classes:
                cfg = build_cfg(method, args.shape, args.eval_batch, args.prec, device, opts)
                trainer = build_trainer(method, cfg, class_names(n_cls), clip_model)
                detail = measure_evaluation(trainer, clip_model, args, device)
                results["eval"][method][str(n_cls)] = detail["ratio"]
                results["eval_detail"][method][str(n_cls)] = detail
                del trainer
        print(f"{method}: measured in {time.time() - started:.0f} s", file=sys.stderr)
    print(markdown_table(results, args.methods))
    if args.json:
        write_json(results, args.json)
        print(f"JSON written to {args.json}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
