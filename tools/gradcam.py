"""Grad-CAM maps of a class logit over the ViT patch tokens, for one or several runs (Bloom's Fig. 1).

    python tools/gradcam.py --root $DATA --trainer MaPLe \\
        --dataset-config-file configs/datasets/eurosat.yaml \\
        --config-file configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml \\
        --model-dir output/.../seed1 [--load-epoch 5] \\
        --image a.jpg --image b.jpg [--label "Forest"] --out gradcam.png [KEY VALUE ...]

Every flag and trailing ``KEY VALUE`` of ``train.py`` means what it means there: the trainer is built
the way ``train.py`` builds it (``train.setup_cfg`` + ``dassl.engine.build_trainer``, so the class
names come from the dataset config and ``--root``) and its weights are loaded with
``trainer.load_model(model_dir, epoch)``. Any method works without code of its own; zero-shot CLIP
(``--trainer ZeroshotCLIP``) needs no ``--model-dir``. Without ``--load-epoch`` (or with ``--best``)
``model-best.pth.tar`` is loaded, or the newest ``model.pth.tar-N`` when there is no best.

Several runs side by side (rows = images, columns = the image + one map per run):

* ``--run NAME:TRAINER:CONFIG[:MODEL_DIR[:EPOCH]]``, repeatable: one column each; the dataset, root,
  backbone, seed, device and ``KEY VALUE`` opts of the command line are shared by all runs, and an
  empty CONFIG means the top-level ``--config-file``. A run of the top-level ``--trainer`` (named
  after it) comes first when ``--trainer`` is given.
* ``--runs FILE``: a YAML or JSON list of ``{name, trainer, config, model_dir, load_epoch, opts}``
  (``opts``: a list ``[KEY, VALUE, ...]`` or a mapping), for runs that need their own opts; they are
  applied after the shared ones.

The class of each map is ``--label`` (a class name or an index; once for every image, or once per
image), else each run's own prediction.

Grad-CAM on a ViT: A = the tokens entering block ``--layer`` (= the output of block ``--layer`` - 1)
at the patch positions only (1..num_patches: not CLS, not the vision prompts, which every method
appends after the patches); g = d(class logit)/dA; w_c = mean of g over the patches;
map = ReLU(sum_c w_c A_c) on the patch grid, upsampled (bilinear) to the image and drawn with the
jet colormap over it. ``--layer`` defaults to -1: the input of the last block, i.e. the output of
the second-to-last one. The last block's own output cannot be used: CLIP reads only its CLS token,
so the gradient at its patch tokens is exactly zero (pytorch-grad-cam's ViT recipe takes the same
point, ``blocks[-1].norm1``).

The activations are captured by wrapping the per-layer hook the image encoder's transformer
receives (the method's own vision hook, or none) for the duration of one forward; no library code
changes. This sees every method's blocks, also those a hook runs through ``block.project`` /
``block.finish`` (BMIP), where an ``nn.Module`` forward hook on the block would never fire.
"""
import argparse
import contextlib
import dataclasses
import difflib
import io
import json
import os
import sys
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import train  # noqa: E402  (registers the datasets and the trainers)
from dassl.engine import build_trainer  # noqa: E402
from dassl.engine.trainer import list_epoch_checkpoints  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402

DISPLAY_SIZE = 224  # pixels of each panel (at least the model's input resolution)
PANEL_INCHES = 2.2  # size of one panel in the figure
CAPTION_INCHES = 0.35  # room under each row for the captions


def figure_size(rows, cols):
    """(width, height) in inches of a figure of ``rows`` images and ``cols`` columns."""
    return PANEL_INCHES * cols, (PANEL_INCHES + CAPTION_INCHES) * rows


# ----------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------
def image_encoder_transformer(model):
    """The ViT of ``model`` (a PromptedCLIP or anything with ``clip_model.visual``)."""
    visual = model.clip_model.visual
    if not hasattr(visual, "transformer") or not hasattr(visual, "patch_size"):
        raise ValueError(f"Grad-CAM over patch tokens needs a ViT image encoder; this backbone's is "
                         f"{type(visual).__name__}")
    return visual


def resolve_layer(layer, n_layers):
    """``layer`` (negative counts from the end) as an index in ``0 .. n_layers - 1``."""
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"--layer {layer} is out of range: the image encoder has {n_layers} blocks "
                         f"(0..{n_layers - 1}, or -1..-{n_layers})")
    return layer % n_layers


@contextlib.contextmanager
def capture_block_input(visual, layer):
    """While active, every forward of ``visual.transformer`` (with grad enabled) appends to the
    yielded list the tokens entering block ``layer``, (N, L, D), as a leaf that requires grad; the
    forward continues from that leaf, so ``d(out)/d(leaf)`` is the gradient at that point.

    The transformer's per-layer hook is wrapped: ``hook(i, x, block)`` (the method's vision hook,
    or ``block(x)`` when it has none) runs unchanged, on the leaf at block ``layer``. The tokens
    are taken before the method's hook edits its prompt positions; the patch positions are the same.
    The instance's ``forward`` is restored on exit.
    """
    transformer = visual.transformer
    index = resolve_layer(layer, len(transformer.resblocks))
    captured = []
    own = transformer.__dict__.get("forward")
    original = transformer.forward

    def forward(x, hook=None):
        def wrapped(i, tokens, block):
            if i == index and torch.is_grad_enabled():
                tokens = tokens.detach().requires_grad_(True)
                captured.append(tokens)
            return hook(i, tokens, block) if hook is not None else block(tokens)
        return original(x, wrapped)

    transformer.forward = forward
    try:
        yield captured
    finally:
        if own is None:
            del transformer.forward
        else:
            transformer.forward = own


@dataclasses.dataclass
class GradCAMResult:
    maps: torch.Tensor     # (N, g, g) float, >= 0, unnormalised
    logits: torch.Tensor   # (N, n_cls) float
    classes: torch.Tensor  # (N,) the class each map explains


def gradcam(model, images, classes=None, layer=-1, autocast=None):
    """Grad-CAM of ``model`` (images -> class logits; its CLIP a ViT) on ``images`` (N, 3, R, R).

    ``classes``: (N,) class indices whose logits are explained, None for the predicted ones, or a
    list whose None entries stand for the prediction of their image.
    ``autocast``: optional context manager factory the forward runs in (a trainer's ``autocast``).
    Images are independent (the logits of one do not depend on the others), so one backward of
    the sum of the chosen logits gives each image its own gradient.
    """
    visual = image_encoder_transformer(model)
    grid = visual.input_resolution // visual.patch_size
    n_patches = grid * grid
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.enable_grad(), capture_block_input(visual, layer) as captured:
            with (autocast() if autocast is not None else contextlib.nullcontext()):
                logits = model(images)
            logits = logits.float()
            if len(captured) != 1:
                raise RuntimeError(f"expected one pass through the image encoder per forward, saw {len(captured)}")
            predicted = logits.argmax(dim=-1)
            if classes is None:
                classes = predicted
            elif isinstance(classes, (list, tuple)):  # None entries: the prediction
                if len(classes) != len(predicted):
                    raise ValueError(f"{len(classes)} classes for {len(predicted)} images")
                classes = [int(p) if c is None else int(c) for c, p in zip(classes, predicted.tolist())]
            classes = torch.as_tensor(classes, device=logits.device).long().view(-1)
            if classes.shape[0] != logits.shape[0]:
                raise ValueError(f"{classes.shape[0]} classes for {logits.shape[0]} images")
            chosen = logits.gather(1, classes[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, captured[0])
        first = getattr(visual, "num_prefix_tokens", 1)              # 1 with a class token, 0 without (SigLIP)
        acts = captured[0].detach()[:, first:first + n_patches].float()  # patch tokens: not CLS, not prompts
        grad = grad[:, first:first + n_patches].float()
        weights = grad.mean(dim=1, keepdim=True)                   # (N, 1, D): mean over the patches
        cam = F.relu((weights * acts).sum(dim=-1))                 # (N, n_patches)
        maps = cam.view(-1, grid, grid)                            # row-major, as conv1's flatten
    finally:
        for module, training in modes:
            module.training = training
    return GradCAMResult(maps.cpu(), logits.detach().cpu(), classes.cpu())


def upsample(maps, size):
    """(N, g, g) maps -> (N, size, size), bilinear, each divided by its maximum (0 stays 0)."""
    up = F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    peak = up.flatten(1).amax(dim=1).clamp_min(1e-12)
    return up / peak[:, None, None]


# ----------------------------------------------------------------------------------------------
# Runs: building trainers the way train.py does
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    name: str
    trainer: str
    config_file: str = ""
    model_dir: str = ""
    load_epoch: Optional[int] = None
    opts: List[str] = dataclasses.field(default_factory=list)


def parse_run(text):
    """``NAME:TRAINER:CONFIG[:MODEL_DIR[:EPOCH]]`` -> Run (CONFIG and MODEL_DIR may be empty)."""
    parts = text.split(":")
    if not 3 <= len(parts) <= 5 or not parts[0] or not parts[1]:
        raise ValueError(f"--run {text!r}: expected NAME:TRAINER:CONFIG[:MODEL_DIR[:EPOCH]]")
    epoch = None
    if len(parts) == 5 and parts[4]:
        if not parts[4].isdigit():
            raise ValueError(f"--run {text!r}: EPOCH must be a number, got {parts[4]!r}")
        epoch = int(parts[4])
    return Run(parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else "", epoch)


def load_runs_file(path):
    """The runs of a YAML/JSON list of ``{name, trainer, config, model_dir, load_epoch, opts}``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--runs {path}: no such file")
    with open(path) as handle:
        text = handle.read()
    try:
        entries = json.loads(text)
    except ValueError:
        import yaml

        entries = yaml.safe_load(text)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"--runs {path}: expected a non-empty list of runs")
    known = {"name", "trainer", "config", "model_dir", "load_epoch", "opts"}
    runs = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "trainer" not in entry:
            raise ValueError(f"--runs {path}: entry {n} is not a mapping with a 'trainer'")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"--runs {path}: entry {n} has unknown keys {unknown} (known: {sorted(known)})")
        opts = entry.get("opts") or []
        if isinstance(opts, dict):
            opts = [x for key, value in opts.items() for x in (key, value)]
        epoch = entry.get("load_epoch")
        runs.append(Run(str(entry.get("name") or entry["trainer"]), str(entry["trainer"]),
                        str(entry.get("config") or ""), str(entry.get("model_dir") or ""),
                        None if epoch is None else int(epoch), [str(o) for o in opts]))
    return runs


def runs_of(args):
    """The columns: the top-level ``--trainer`` run (when given), then ``--run``, then ``--runs``."""
    runs = []
    if args.trainer:
        runs.append(Run(args.trainer, args.trainer, args.config_file, args.model_dir,
                        None if args.best else args.load_epoch))
    runs += [parse_run(text) for text in args.run or []]
    if args.runs:
        runs += load_runs_file(args.runs)
    if not runs:
        raise ValueError("nothing to explain: give --trainer (with its --config-file, --model-dir) or --run/--runs")
    return runs


def build_run(args, run):
    """Build ``run``'s trainer as ``train.py`` would (its config from the shared ``args`` with the
    run's trainer, config file and opts) and load its weights; returns the trainer."""
    run_args = argparse.Namespace(**vars(args))
    run_args.trainer, run_args.config_file = run.trainer, run.config_file or args.config_file
    # The data loaders are never iterated here: no worker processes.
    run_args.opts = list(args.opts or []) + list(run.opts) + ["DATALOADER.NUM_WORKERS", "0"]
    cfg = train.setup_cfg(run_args)
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    if cfg.MODEL.INIT_SEED >= 0:
        torch.manual_seed(cfg.MODEL.INIT_SEED)
    trainer = build_trainer(cfg)
    if run.model_dir:
        if not os.path.isdir(run.model_dir):
            raise FileNotFoundError(f"run {run.name}: model dir {run.model_dir} does not exist")
        epoch = run.load_epoch
        if epoch is None:
            names = trainer.get_model_names()
            best = trainer.model_file_path(run.model_dir, names[0])
            epochs = list_epoch_checkpoints(os.path.join(run.model_dir, names[0]))
            if not os.path.exists(best) and epochs:
                epoch = epochs[-1]
                print(f"run {run.name}: no model-best.pth.tar, loading the newest epoch ({epoch})", file=sys.stderr)
        trainer.load_model(run.model_dir, epoch=epoch)
    elif any(trainer._optims[n] is not None for n in trainer.get_model_names()):
        print(f"warning: run {run.name} ({run.trainer}) has trainable weights but no model dir: "
              "its maps are those of the untrained prompts", file=sys.stderr)
    return trainer


@contextlib.contextmanager
def quiet(enabled):
    """Hold back stdout (the trainer's build log) unless it fails, then print it to stderr."""
    if not enabled:
        yield
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise


def resolve_class(label, classnames):
    """A class index from a class name (case and '_'/' ' insensitive) or an index."""
    def norm(name):
        return name.replace("_", " ").strip().lower()

    names = [norm(c) for c in classnames]
    if norm(label) in names:
        return names.index(norm(label))
    if label.lstrip("-").isdigit():
        index = int(label)
        if 0 <= index < len(classnames):
            return index
        raise ValueError(f"--label {label}: class index out of range (0..{len(classnames) - 1})")
    close = difflib.get_close_matches(norm(label), names, n=3, cutoff=0.5)
    hint = f"; did you mean: {', '.join(classnames[names.index(c)] for c in close)}?" if close else ""
    raise ValueError(f"--label {label!r} is not a class of this dataset{hint}")


def labels_for(labels, n_images):
    """``--label`` values -> one per image (or None per image when none is given)."""
    if not labels:
        return [None] * n_images
    if len(labels) == 1:
        return labels * n_images
    if len(labels) != n_images:
        raise ValueError(f"{len(labels)} --label values for {n_images} images: give one, or one per image")
    return list(labels)


def load_images(paths):
    from PIL import Image

    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--image {path}: no such file")
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def display_transform(size):
    """The test crop's geometry (resize the shorter side, centre crop) at ``size`` pixels, to [0, 1]."""
    from dassl.data.transforms.pil_transforms import (CenterCrop, Compose, InterpolationMode, Resize,
                                                      ToTensor)

    return Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size), ToTensor()])


@dataclasses.dataclass
class Column:
    """One run's maps for every image, with what each map explains."""
    name: str
    maps: torch.Tensor       # (N, size, size) in [0, 1]
    captions: List[str]


def explain_run(trainer, pil_images, labels, layer, size):
    """Grad-CAM of one built trainer on the images: (Column, GradCAMResult)."""
    from dassl.data.transforms import build_transform

    classnames = list(trainer.dm.dataset.classnames)
    with contextlib.redirect_stdout(io.StringIO()):  # its build log
        tfm = build_transform(trainer.cfg, is_train=False)
    batch = torch.stack([tfm(image) for image in pil_images]).to(trainer.device)
    wanted = [None if label is None else resolve_class(label, classnames) for label in labels]
    result = gradcam(trainer.model, batch, wanted, layer, autocast=trainer.autocast)
    probs = result.logits.softmax(dim=-1)
    predicted = result.logits.argmax(dim=-1)
    captions = []
    for n, c in enumerate(result.classes.tolist()):
        text = f"{classnames[c]} ({probs[n, c]:.0%})"
        if predicted[n] != c:
            text += f"\npred: {classnames[predicted[n]]}"
        captions.append(text)
    return Column("", upsample(result.maps, size), captions), result


def plot_figure(display_images, columns, row_names, out, alpha=0.5, dpi=100):
    """Rows = images; columns = the image, then each run's map over it. Returns (rows, cols)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(display_images), 1 + len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=figure_size(rows, cols), squeeze=False)
    for r, image in enumerate(display_images):
        pixels = image.permute(1, 2, 0).clamp(0, 1).numpy()
        axes[r, 0].imshow(pixels)
        axes[r, 0].set_ylabel(row_names[r], fontsize=8)
        for c, column in enumerate(columns, start=1):
            axes[r, c].imshow(pixels)
            axes[r, c].imshow(column.maps[r].numpy(), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
            axes[r, c].set_xlabel(column.captions[r], fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=9)
    for c, column in enumerate(columns, start=1):
        axes[0, c].set_title(column.name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi, metadata={"Title": "Grad-CAM", "Description": f"rows={rows} cols={cols} runs="
                                        + ",".join(c.name for c in columns)})
    plt.close(fig)
    return rows, cols


def build_parser():
    parser = train.build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.epilog = ("Several runs: --run NAME:TRAINER:CONFIG[:MODEL_DIR[:EPOCH]] (repeatable) or --runs FILE. "
                     "Details: the docstring of tools/gradcam.py and docs/RUN.md, 'Grad-CAM maps'.")
    parser.add_argument("--image", action="append", required=True, metavar="PATH",
                        help="image to explain, one figure row each (repeatable)")
    parser.add_argument("--label", action="append", metavar="CLASS",
                        help="class name or index to explain: once for all images or once per image "
                             "(default: each run's prediction)")
    parser.add_argument("--out", default="gradcam.png", help="PNG to write (default: gradcam.png)")
    parser.add_argument("--run", action="append", metavar="NAME:TRAINER:CONFIG[:MODEL_DIR[:EPOCH]]",
                        help="one more run (figure column); repeatable")
    parser.add_argument("--runs", metavar="FILE", help="YAML/JSON list of runs {name, trainer, config, "
                        "model_dir, load_epoch, opts}")
    parser.add_argument("--layer", type=int, default=-1,
                        help="explain the patch tokens entering this transformer block (= the output of the block "
                             "before it); default -1: the last block's input")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the map (default 0.5)")
    parser.add_argument("--verbose", action="store_true", help="show the trainers' build log")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        runs = runs_of(args)
        pil_images = load_images(args.image)
        labels = labels_for(args.label, len(pil_images))
        columns, display, size = [], None, None
        for run in runs:
            with quiet(not args.verbose):
                trainer = build_run(args, run)
            res = trainer.model.clip_model.image_resolution
            if size is None:
                size = max(DISPLAY_SIZE, res)
                tfm = display_transform(size)
                display = [tfm(image) for image in pil_images]
            column, result = explain_run(trainer, pil_images, labels, args.layer, size)
            column.name = run.name
            columns.append(column)
            for path, caption in zip(args.image, column.captions):
                print(f"{run.name}: {os.path.basename(path)} -> {caption.replace(chr(10), ', ')}")
            del trainer
        rows, cols = plot_figure(display, columns, [os.path.basename(p) for p in args.image], args.out,
                                 alpha=args.alpha)
    except train.USER_ERRORS as error:
        if args.debug or os.environ.get("PROMPTCLIP_DEBUG"):
            raise
        print(f"error: {train.error_line(error)}", file=sys.stderr)
        return 2
    print(f"Grad-CAM figure ({rows} images x {cols - 1} runs) saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
