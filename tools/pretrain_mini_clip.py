"""Pretrain the mini CLIP contrastively on captioned MiniShapes "web" images, on the CPU.

    python tools/pretrain_mini_clip.py --out clip/weights/mini-clip.pt      # the shipped recipe
    python tools/pretrain_mini_clip.py --steps 200 --out /tmp/quick.pt      # a quick look

The model is a CLIP in OpenAI's layout (ViT with 4 px patches at 32 px, width 128, 4 layers; causal
text transformer, width 128, 4 layers, CLIP's BPE tokenizer and 77-token context; 128-d joint
space). Training data is an in-memory pool of "web"-style renders (``datasets/minishapes.py``) of
the 48 compositions that are not held out, each image captioned by a random template with its full
class name ("a photo of a red circle."), or now and then with only its colour ("a photo of a red
shape.") or only its shape ("a photo of a circle."), so attribute words are also learned alone.

Two details matter for a model this small (both found by an earlier prototype):

* every caption in a batch that is true of an image is a positive for it (and vice versa), with the
  target spread evenly over them; plain InfoNCE would push apart the many copies of a class a batch
  holds;
* text is cut to the longest caption of the batch, which the causal mask makes exact.

Training runs attention through PyTorch's plain ("math") kernel: at 65 tokens its backward is
faster on the CPU than the fused kernel's (about 0.55 s vs 0.8 s per step here).

The checkpoint is saved in fp16 with OpenAI's key names, with a JSON report beside it
(``<out>.json``: recipe, time, zero-shot accuracies). ``MODEL.BACKBONE.NAME mini-clip`` loads the
shipped one; see docs/MINI_CLIP.md.
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from clip.loader import CLIP_MEAN, CLIP_STD  # noqa: E402
from clip.model import CLIP  # noqa: E402
from clip.tokenizer import tokenize  # noqa: E402
from dassl.utils import atomic_torch_save, write_json  # noqa: E402
from datasets import minishapes as world  # noqa: E402

ARCHITECTURE = dict(embed_dim=128, image_resolution=32, vision_layers=4, vision_width=128,
                    vision_patch_size=4, context_length=77, vocab_size=49408,
                    transformer_width=128, transformer_heads=2, transformer_layers=4)
TEMPLATES = (
    "a photo of a {}.", "a {}.", "a picture of a {}.", "an image of a {}.", "a drawing of a {}.",
    "a small {}.", "a big {}.", "a rendering of a {}.", "a {} on a plain background.",
)
ZERO_SHOT_TEMPLATE = "a photo of a {}."  # the one ZeroshotCLIP uses for MiniShapes
ANY = -1


def caption_table():
    """Every caption the pretraining can draw: ``(texts, colour ids, shape ids)``, where ``ANY``
    marks an attribute the caption does not mention."""
    subjects = [(c, s, world.classname(c, s)) for c in range(len(world.COLOURS))
                for s in range(len(world.SHAPES)) if not world.is_held_out(c, s)]
    subjects += [(c, ANY, f"{world.COLOUR_NAMES[c]} shape") for c in range(len(world.COLOURS))]
    subjects += [(ANY, s, world.SHAPES[s]) for s in range(len(world.SHAPES))]
    texts, colours, shapes = [], [], []
    for colour, shape, subject in subjects:
        for template in TEMPLATES:
            texts.append(template.format(subject))
            colours.append(colour)
            shapes.append(shape)
    return texts, torch.tensor(colours), torch.tensor(shapes)


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> CLIP-normalised float (B, 3, H, W)."""
    images = images_uint8.permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(CLIP_MEAN)[None, :, None, None]
    std = torch.tensor(CLIP_STD)[None, :, None, None]
    return (images - mean) / std


def encode_texts(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """Text features for token rows, run on the columns up to the longest caption only."""
    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    return model.encode_text_embeddings(model.token_embedding(tokens[:, :length]), eot)


def shared_positive_loss(image_features, text_features, logit_scale, positives):
    """Symmetric cross-entropy whose targets spread evenly over all true (image, caption) pairs."""
    image_features = F.normalize(image_features.float(), dim=-1)
    text_features = F.normalize(text_features.float(), dim=-1)
    logits = logit_scale * image_features @ text_features.t()
    targets = positives.float()
    image_loss = -(targets / targets.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_loss = -(targets / targets.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (image_loss + text_loss) / 2


@torch.no_grad()
def image_features_of(model: CLIP, images_uint8: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Normalised image features of uint8 images, in chunks."""
    chunks = [model.encode_image(normalise(images_uint8[start:start + batch])).float()
              for start in range(0, len(images_uint8), batch)]
    return F.normalize(torch.cat(chunks), dim=-1)


@torch.no_grad()
def class_text_features(model: CLIP) -> torch.Tensor:
    """Normalised zero-shot text features of the 64 compositions, in label order."""
    texts = [ZERO_SHOT_TEMPLATE.format(world.classname(*pair)) for pair in world.compositions()]
    return F.normalize(encode_texts(model, tokenize(texts)).float(), dim=-1)


def accuracy(features, labels, text_features, class_ids) -> float:
    """Accuracy (%) of the images whose label is in ``class_ids``, classified among ``class_ids``."""
    class_ids = torch.as_tensor(class_ids)
    keep = torch.isin(labels, class_ids)
    predictions = class_ids[(features[keep] @ text_features[class_ids].t()).argmax(1)]
    return 100.0 * (predictions == labels[keep]).float().mean().item()


def evaluate(model: CLIP, benchmark_test: torch.Tensor, web_held_out):
    """The zero-shot numbers reported for the checkpoint: base / new (each among its own 32 classes,
    the base-to-novel protocol), all 64, held-out compositions among all 64; all on the benchmark's
    test images, plus the held-out compositions rendered in the pretraining ("web") style."""
    model.eval()
    classes, per_class = benchmark_test.shape[:2]
    features = image_features_of(model, benchmark_test.reshape(classes * per_class, *benchmark_test.shape[2:]))
    labels = torch.arange(classes).repeat_interleave(per_class)
    text_features = class_text_features(model)
    every = list(range(classes))
    held_out = [i for i, pair in enumerate(world.compositions()) if world.is_held_out(*pair)]
    keep_held_out = torch.isin(labels, torch.tensor(held_out))
    web_images, web_labels = web_held_out
    results = {
        "base": accuracy(features, labels, text_features, every[:classes // 2]),
        "new": accuracy(features, labels, text_features, every[classes // 2:]),
        "all": accuracy(features, labels, text_features, every),
        "held_out_among_all": accuracy(features[keep_held_out], labels[keep_held_out], text_features, every),
        "web_held_out_among_all": accuracy(image_features_of(model, web_images), web_labels, text_features, every),
    }
    results["hm"] = 2 * results["base"] * results["new"] / max(results["base"] + results["new"], 1e-9)
    model.train()
    return results


def make_pool(per_class: int, seed: int, exclude_held_out: bool = True):
    """``per_class`` web-style renders of every (non-held-out) composition: (uint8 images, colour, shape)."""
    generator = torch.Generator().manual_seed(seed)
    pairs = [(c, s) for c in range(len(world.COLOURS)) for s in range(len(world.SHAPES))
             if not (exclude_held_out and world.is_held_out(c, s))]
    colours = torch.tensor([c for c, _ in pairs]).repeat_interleave(per_class)
    shapes = torch.tensor([s for _, s in pairs]).repeat_interleave(per_class)
    images = []
    for start in range(0, len(colours), 2048):
        chunk = world.render(colours[start:start + 2048], shapes[start:start + 2048], "web", generator)
        images.append(world.to_uint8(chunk))
    return torch.cat(images), colours, shapes


def web_held_out_set(seed: int, per_class: int = 30):
    """The held-out compositions rendered in the pretraining ("web") style: (uint8 images, labels)."""
    held_out = [(label, pair) for label, pair in enumerate(world.compositions()) if world.is_held_out(*pair)]
    colours = torch.tensor([pair[0] for _, pair in held_out]).repeat_interleave(per_class)
    shapes = torch.tensor([pair[1] for _, pair in held_out]).repeat_interleave(per_class)
    images = world.render(colours, shapes, "web", torch.Generator().manual_seed(seed))
    return world.to_uint8(images), torch.tensor([label for label, _ in held_out]).repeat_interleave(per_class)


def save_openai_fp16(model: CLIP, path: str) -> None:
    """fp16 state dict with OpenAI's key names, written atomically."""
    atomic_torch_save({key: value.detach().half() for key, value in model.state_dict().items()}, path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="checkpoint path (a JSON report is written beside it)")
    parser.add_argument("--steps", type=int, default=1400)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--pool-per-class", type=int, default=500,
                        help="web renders per composition in the training pool")
    parser.add_argument("--partial-caption-prob", type=float, default=0.4,
                        help="chance a caption names only the colour or only the shape")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16 autocast on the CPU (the recipe) or plain fp32")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = PyTorch's default)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    print("rendering the training pool and the evaluation images ...")
    pool, pool_colours, pool_shapes = make_pool(args.pool_per_class, args.seed)
    benchmark_test = world.render_benchmark()["test"]
    web_held_out = web_held_out_set(args.seed + 1)

    texts, caption_colours, caption_shapes = caption_table()
    caption_tokens = tokenize(texts)
    n_templates = len(TEMPLATES)
    # caption_lookup[colour, shape] = row of the first template's caption (index -1 = ANY).
    caption_lookup = torch.full((len(world.COLOURS) + 1, len(world.SHAPES) + 1), -1, dtype=torch.long)
    firsts = torch.arange(0, len(texts), n_templates)
    caption_lookup[caption_colours[firsts], caption_shapes[firsts]] = firsts

    model = CLIP(**ARCHITECTURE)
    model.train()
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "embedding" not in name else no_decay).append(parameter)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(args.steps - args.warmup, 1)
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))

    generator = torch.Generator().manual_seed(args.seed + 2)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    history = []
    progress = tqdm(range(args.steps), desc="pretraining", ncols=100)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        index = torch.randint(0, len(pool), (args.batch_size,), generator=generator)
        colours, shapes = pool_colours[index], pool_shapes[index]
        images = normalise(pool[index])
        flip = torch.rand(args.batch_size, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)

        # One caption per image: full name, or (now and then) only its colour or only its shape.
        kind = torch.rand(args.batch_size, generator=generator)
        half_partial = args.partial_caption_prob / 2
        caption_colour = torch.where(kind < half_partial, torch.full_like(colours, ANY), colours)
        caption_shape = torch.where((kind >= half_partial) & (kind < args.partial_caption_prob),
                                    torch.full_like(shapes, ANY), shapes)
        first = caption_lookup[caption_colour, caption_shape]  # ANY = -1 picks the last slot
        chosen = first + torch.randint(0, n_templates, (args.batch_size,), generator=generator)
        unique_captions = chosen.unique()
        positives = (((caption_colours[unique_captions][None] == ANY) | (caption_colours[unique_captions][None] == colours[:, None]))
                     & ((caption_shapes[unique_captions][None] == ANY) | (caption_shapes[unique_captions][None] == shapes[:, None])))

        with autocast, sdpa_kernel(SDPBackend.MATH):
            image_features = model.encode_image(images)
            text_features = encode_texts(model, caption_tokens[unique_captions])
        loss = shared_positive_loss(image_features, text_features, model.logit_scale.exp().clamp(max=100),
                                    positives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step == 0:
            initial_loss = loss.item()

        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            results = evaluate(model, benchmark_test, web_held_out)
            results.update(step=step + 1, loss=loss.item(), minutes=(time.time() - started) / 60)
            history.append(results)
            tqdm.write("step {step}: loss {loss:.3f}  zero-shot base {base:.1f}  new {new:.1f}  "
                       "HM {hm:.1f}  held-out {held_out_among_all:.1f}  "
                       "web held-out {web_held_out_among_all:.1f}".format(**results))

    save_openai_fp16(model, args.out)
    # The numbers of the saved (fp16) weights, as every user will load them.
    from clip.loader import load
    reloaded, _ = load(args.out)
    final = evaluate(reloaded, benchmark_test, web_held_out)
    report = {
        "checkpoint": os.path.basename(args.out),
        "zero_shot": final,
        "chance": {"base": 100 / 32, "new": 100 / 32, "all": 100 / 64},
        "minutes": (time.time() - started) / 60,
        "initial_loss": initial_loss,
        "recipe": {key: value for key, value in vars(args).items() if key != "out"},
        "architecture": ARCHITECTURE,
        "history": history,
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
    }
    write_json(report, f"{args.out}.json")
    print(json.dumps(final, indent=2))


if __name__ == "__main__":
    main()
