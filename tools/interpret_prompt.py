"""Read learned text prompts as words: the nearest vocabulary tokens of every context vector.

    python tools/interpret_prompt.py RUN_OR_CHECKPOINT [--topk K] [--json OUT] [--backbone NAME] [--epoch N]

CoOp's ``interpret_prompt.py`` convention: for each learned context vector, the K tokens of CLIP's
vocabulary whose token embeddings are nearest by Euclidean distance, nearest first (the
top-1 tokens of a prompt give its "reading"). Printed as one table per prompt and, with
``--json``, written as JSON.

RUN_OR_CHECKPOINT is a checkpoint file or a run's output dir (its model folder's checkpoint:
``model.pth.tar-<--epoch>`` when given; otherwise ``model-best.pth.tar`` for a run deployed with
``TEST.FINAL_MODEL best_val``, else the newest ``model.pth.tar-N``, else ``model-best.pth.tar``).

The token embeddings are those of the run's CLIP: ``--backbone`` (``mini-clip``, an OpenAI name such
as ``ViT-B/16``, or a checkpoint path), else ``MODEL.BACKBONE.NAME`` from the training config stored
in the checkpoint, the run's ``results.json`` or its ``log.txt``.

Recognised layouts (keys with or without the ``prompt_learner.`` prefix of MaPLe, IVLP, BMIP and
the ``PromptSRC_*``/``CoPrompt_*`` compositions):

* ``ctx`` (n_ctx, D): the layer-0 context of CoOp, CoCoOp, MaPLe, IVLP; (n_cls, n_ctx, D) is
  CoOp's class-specific context (one prompt per class).
* ``ctx_t`` (n_ctx, D): BMIP's layer-0 text context.
* ``text_prompts`` (layers, n_ctx, D): Bloom; row j belongs to layer ``START + j`` (START from
  the stored config, else 0), so row 0 is the layer-0 context when START is 0.
* deep text prompts, layer ``j + 1``: ``compound_prompts_text.{j}`` (MaPLe, BMIP),
  ``deep_text_prompts.{j}`` (IVLP); the official IVLP ``text_encoder.transformer.resblocks.{L}.VPT_shallow``
  is layer L.

Only layer-0 prompts are token embeddings. Deep prompts replace hidden states at the input of a
later layer: they live in another space, so their nearest tokens are reported (labelled by
layer) but are no reading of the prompt.
"""
import argparse
import ast
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import torch  # noqa: E402

import clip  # noqa: E402
from dassl.utils import load_released_checkpoint, state_dict_of, strip_module_prefix  # noqa: E402

_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")
_PREFIX = "prompt_learner."
_DEEP_KEYS = (
    (re.compile(r"^compound_prompts_text\.(\d+)$"), 1),  # MaPLe, BMIP: layer j + 1
    (re.compile(r"^deep_text_prompts\.(\d+)$"), 1),  # IVLP: layer j + 1
    (re.compile(r"^text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$"), 0),  # official IVLP: layer L
)
KNOWN_LAYOUTS = ("ctx (CoOp, CoCoOp, MaPLe, IVLP, PromptSRC, CoPrompt), ctx_t (BMIP), text_prompts (Bloom), "
                 "compound_prompts_text.{j} / deep_text_prompts.{j} (deep text prompts), each with or without "
                 "the prompt_learner. prefix")
EMBEDDING = "token_embedding"
HIDDEN = "hidden_state"
HIDDEN_NOTE = ("deep prompts (kind hidden_state) replace the hidden states at the input of their layer: they are "
               "not token embeddings, so their nearest tokens are no reading of the prompt, only a rough probe")


class InterpretError(ValueError):
    """A source this tool cannot read; reported as one line."""


# ------------------------------------------------------------------------------- the checkpoint
def _epochs(folder):
    found = {}
    for path in glob.glob(os.path.join(folder, "model.pth.tar-*")):
        match = _EPOCH_FILE.match(os.path.basename(path))
        if match:
            found[int(match.group(1))] = path
    return found


def _model_folders(run_dir):
    """The run dir itself and its subfolders that hold checkpoints, sorted."""
    folders = []
    for folder in [run_dir] + sorted(glob.glob(os.path.join(run_dir, "*"))):
        if os.path.isdir(folder) and (_epochs(folder) or os.path.isfile(os.path.join(folder, "model-best.pth.tar"))):
            folders.append(folder)
    return folders


def checkpoint_candidates(source, epoch=None, prefer_best=False):
    """Checkpoint files ``source`` may mean, most likely first (one per model folder)."""
    if os.path.isfile(source):
        return [source]
    if not os.path.isdir(source):
        raise InterpretError(f"{source}: no such file or directory")
    folders = _model_folders(source)
    if not folders:
        raise InterpretError(f"{source}: no model.pth.tar-N or model-best.pth.tar in it or in its subfolders")
    found = []
    for folder in folders:
        epochs = _epochs(folder)
        best = os.path.join(folder, "model-best.pth.tar")
        if epoch is not None:
            if epoch in epochs:
                found.append(epochs[epoch])
            continue
        if prefer_best and os.path.isfile(best):
            found.append(best)
        elif epochs:
            found.append(epochs[max(epochs)])
        elif os.path.isfile(best):
            found.append(best)
    if not found:
        raise InterpretError(f"{source}: no model.pth.tar-{epoch} in {', '.join(folders)}")
    return found


def _literal(text):
    if not isinstance(text, str):
        return text
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("'\"")


def _flatten(node, prefix=""):
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_from_log(path):
    """Flat ``{"A.B.C": value}`` from the config dump in a Dassl ``log.txt`` (indented ``KEY: value``)."""
    flat, stack = {}, []
    try:
        with open(path, errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return flat
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "** Config **") + 2
    except StopIteration:
        return flat
    for line in lines[start:]:
        if not line.strip():
            continue
        match = re.match(r"^( *)([A-Za-z0-9_]+):(.*)$", line)
        if not match:
            break  # the end of the dump
        depth = len(match.group(1)) // 2
        stack[depth:] = [match.group(2)]
        if match.group(3).strip():
            flat[".".join(stack)] = _literal(match.group(3))
    return flat


def run_config(checkpoint, ckpt):
    """The training config of ``checkpoint`` (flat dict): stored in it (our checkpoints), else from
    the run's ``results.json`` or ``log.txt`` next to its model folder."""
    stored = ((ckpt.get("trainer_state") or {}).get("config") or {}) if isinstance(ckpt, dict) else {}
    config = {k: _literal(v) for k, v in stored.items()}
    folder = os.path.dirname(os.path.abspath(checkpoint))
    for run_dir in (os.path.dirname(folder), folder):
        results = os.path.join(run_dir, "results.json")
        if os.path.isfile(results):
            try:
                with open(results) as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                data = {}
            for key, value in _flatten(data.get("config") or {}).items():
                config.setdefault(key, value)
            if data.get("backbone"):
                config.setdefault("MODEL.BACKBONE.NAME", data["backbone"])
            if data.get("trainer"):
                config.setdefault("TRAINER.NAME", data["trainer"])
        for key, value in config_from_log(os.path.join(run_dir, "log.txt")).items():
            config.setdefault(key, value)
    return config


# ----------------------------------------------------------------------------------- layouts
def _bloom_start(config):
    """The layer of Bloom's ``text_prompts`` row 0 (``TRAINER.BLOOM``: START / INTERVAL / LAYOUT), or
    None when the config does not say."""
    if config.get("TRAINER.BLOOM.LAYOUT") == "maple_derived":
        return 0
    interval = config.get("TRAINER.BLOOM.INTERVAL")
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        return int(interval[0]) - (0 if config.get("TRAINER.BLOOM.INTERVAL_READING", "zero_based") == "zero_based"
                                   else 1)
    start = config.get("TRAINER.BLOOM.START")
    return int(start) if isinstance(start, int) else None


def find_prompts(state_dict, config=None):
    """``(layout, prompts, notes)``: the learned text prompts of ``state_dict``.

    ``prompts`` is a list of dicts ``{key, name, layer, kind, class_index, vectors (n, D)}`` in
    layer order; ``layout`` names the trainer family the keys belong to. Raises InterpretError
    when no key is a learned text prompt.
    """
    config = config or {}
    keys = {(k[len(_PREFIX):] if k.startswith(_PREFIX) else k): k for k in state_dict}
    prompts, notes = [], []

    def add(key, layer, vectors, class_index=None):
        prompts.append({"key": keys.get(key, key), "name": key, "layer": layer,
                        "kind": EMBEDDING if layer == 0 else HIDDEN, "class_index": class_index,
                        "vectors": vectors})

    for name in ("ctx", "ctx_t"):
        if name not in keys:
            continue
        value = state_dict[keys[name]]
        if value.dim() == 2:
            add(name, 0, value)
        elif value.dim() == 3:  # CoOp's class-specific contexts
            for c in range(value.shape[0]):
                add(name, 0, value[c], class_index=c)
        else:
            raise InterpretError(f"{keys[name]} has shape {tuple(value.shape)}; "
                                 "expected (n_ctx, D) or (n_cls, n_ctx, D)")
    if "text_prompts" in keys:  # Bloom: (layers, n_ctx, D), row j at layer START + j
        value = state_dict[keys["text_prompts"]]
        if value.dim() != 3:
            raise InterpretError(f"{keys['text_prompts']} has shape {tuple(value.shape)}; expected (layers, n_ctx, D)")
        start = _bloom_start(config)
        if start is None:
            start = 0
            notes.append("Bloom's first prompted layer (TRAINER.BLOOM.START) is not recorded with this checkpoint: "
                         "row 0 of text_prompts is read as layer 0")
        for j in range(value.shape[0]):
            prompts.append({"key": f"{keys['text_prompts']}[{j}]", "name": "text_prompts", "layer": start + j,
                            "kind": EMBEDDING if start + j == 0 else HIDDEN, "class_index": None,
                            "vectors": value[j]})
        if start == 0:
            notes.append("Bloom's layer-0 text prompt is its own prompt before fusion with the vision branch "
                         "(with INIT_MODE intact and gate fusion it starts as 2x the CTX_INIT embedding)")
    for name in keys:
        for pattern, offset in _DEEP_KEYS:
            match = pattern.match(name)
            if match and state_dict[keys[name]].dim() == 2:
                add(name, int(match.group(1)) + offset, state_dict[keys[name]])
    if not prompts:
        shown = sorted(state_dict)[:6]
        more = f" ... ({len(state_dict)} keys)" if len(state_dict) > 6 else ""
        raise InterpretError(f"no learned text context in this checkpoint (keys: {', '.join(shown) or 'none'}{more}); "
                             f"known layouts: {KNOWN_LAYOUTS}")
    prompts.sort(key=lambda p: (p["layer"], -1 if p["class_index"] is None else p["class_index"]))
    layout = _layout(keys, state_dict)
    if layout == "CoCoOp":
        notes.append("CoCoOp adds the image-conditioned meta-net output to ctx for every image; only ctx is read")
    if any(p["kind"] == HIDDEN for p in prompts):
        notes.append(HIDDEN_NOTE)
    return layout, prompts, notes


def _layout(keys, state_dict):
    """The key layout's name: the trainer family that writes it (compositions write their base's)."""
    if "text_prompts" in keys:
        return "Bloom"
    if "ctx_t" in keys:
        return "BMIP"
    if any(k.startswith("compound_prompts_text.") for k in keys):
        return "MaPLe"  # also CoPrompt, PromptSRC_MaPLe
    if any(k.startswith("deep_text_prompts.") or k.endswith(".VPT_shallow") for k in keys):
        return "IVLP"  # also PromptSRC
    if any(k.startswith("meta_net.") for k in keys):
        return "CoCoOp"
    if keys["ctx"].startswith(_PREFIX):
        return "prompt_learner.ctx"  # MaPLe or IVLP of depth 1, or a composition over CoOp
    return "CoOp (class-specific)" if state_dict[keys["ctx"]].dim() == 3 else "CoOp"


# ---------------------------------------------------------------------------------- distances
_TOKEN_EMBEDDINGS = {}


def load_token_embedding(backbone, weights=None):
    """CLIP's token-embedding matrix (vocab, D), fp32, of ``backbone`` (resolved as ``clip.load``
    does: an OpenAI name, downloaded once; ``mini-clip``; a file; ``openclip:<model>`` with its
    ``weights`` file). Only the weights are read, no model is built; kept per backbone for the process."""
    from clip.loader import BUNDLED_MODELS, MODEL_URLS

    if backbone not in _TOKEN_EMBEDDINGS:
        try:
            if clip.openclip.is_openclip_name(backbone):
                if not weights:
                    raise RuntimeError("an openclip: backbone needs its weights file (MODEL.BACKBONE.WEIGHTS of "
                                       "the run, or --weights)")
                state = clip.openclip.read_weights(weights)
                path = None
            elif backbone in MODEL_URLS:
                path = clip.download(MODEL_URLS[backbone])
            elif backbone in BUNDLED_MODELS:
                path = BUNDLED_MODELS[backbone]
            elif os.path.isfile(os.path.expanduser(backbone)):
                path = os.path.expanduser(backbone)
            else:
                raise RuntimeError(f"neither a known model name ({', '.join(clip.available_models())}) "
                                   "nor an existing file")
            if path is not None:
                state = clip.read_state_dict(path)
        except (RuntimeError, OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InterpretError(f"cannot load CLIP backbone {backbone!r}: {first}") from None
        if "token_embedding.weight" not in state:
            raise InterpretError(f"backbone {backbone!r} has no token_embedding.weight: not a CLIP checkpoint")
        _TOKEN_EMBEDDINGS[backbone] = state["token_embedding.weight"].detach().float()
    return _TOKEN_EMBEDDINGS[backbone]


def nearest_tokens(vectors, token_embedding, topk):
    """``(distances, ids)`` (n, topk): the ``topk`` tokens nearest to each row of ``vectors`` by
    Euclidean distance, nearest first."""
    distance = torch.cdist(vectors.float(), token_embedding)
    values, ids = torch.topk(distance, k=min(topk, token_embedding.shape[0]), dim=1, largest=False, sorted=True)
    return values, ids


def interpret(source, topk=5, backbone=None, epoch=None, weights=None):
    """The nearest tokens of every learned text prompt of ``source`` (run dir or checkpoint file),
    as the JSON-ready dict :func:`main` writes."""
    if topk < 1:
        raise InterpretError(f"--topk must be >= 1, got {topk}")
    prefer_best = False
    if os.path.isdir(source):
        folder_cfg = config_from_log(os.path.join(source, "log.txt"))
        prefer_best = folder_cfg.get("TEST.FINAL_MODEL") == "best_val"
    errors = []
    for checkpoint in checkpoint_candidates(source, epoch, prefer_best):
        try:
            ckpt = load_released_checkpoint(checkpoint)
        except Exception as err:  # an unreadable or foreign file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InterpretError(f"{checkpoint}: not a readable checkpoint ({first})") from None
        state = state_dict_of(ckpt)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InterpretError(f"{checkpoint}: not a state dict of tensors")
        config = run_config(checkpoint, ckpt if isinstance(ckpt, dict) else {})
        try:
            layout, prompts, notes = find_prompts(dict(strip_module_prefix(state)), config)
        except InterpretError as err:
            errors.append(f"{checkpoint}: {err}")
            continue
        break
    else:
        raise InterpretError(errors[0] if len(errors) == 1 else "; ".join(errors))

    name = backbone or config.get("MODEL.BACKBONE.NAME")
    if not name:
        raise InterpretError(f"{checkpoint}: the run's backbone is not recorded (no training config in the "
                             "checkpoint, no results.json or log.txt beside it): pass --backbone")
    embedding = load_token_embedding(str(name), weights or config.get("MODEL.BACKBONE.WEIGHTS"))
    if clip.openclip.is_openclip_name(str(name)):
        try:
            tokenizer = clip.openclip.text_tokenizer(str(name), config.get("MODEL.BACKBONE.TOKENIZER") or None)
        except (OSError, RuntimeError, ValueError) as err:
            raise InterpretError(f"cannot load the tokenizer of backbone {name}: {err}") from None
    else:
        tokenizer = clip.tokenizer.BPETextTokenizer()
    width = embedding.shape[1]
    result = {
        "source": os.path.abspath(source),
        "checkpoint": os.path.abspath(checkpoint),
        "trainer": config.get("TRAINER.NAME"),
        "layout": layout,
        "backbone": str(name),
        "token_embedding_shape": list(embedding.shape),
        "metric": "euclidean",
        "topk": int(topk),
        "prompts": [],
        "notes": notes,
    }
    for prompt in prompts:
        vectors = prompt["vectors"]
        if vectors.shape[-1] != width:
            raise InterpretError(f"{prompt['key']} has width {vectors.shape[-1]} but the token embedding of backbone "
                                 f"{name} has width {width}: is this the run's CLIP? (pass --backbone)")
        distances, ids = nearest_tokens(vectors, embedding, topk)
        tokens = []
        for position in range(vectors.shape[0]):
            nearest = []
            for d, i in zip(distances[position].tolist(), ids[position].tolist()):
                nearest.append({"id": int(i), "token": tokenizer.token_string(i),
                                "text": tokenizer.decode([int(i)]).strip(), "distance": float(d)})
            tokens.append({"position": position, "nearest": nearest})
        reading = tokenizer.decode([t["nearest"][0]["id"] for t in tokens]).strip()
        result["prompts"].append({
            "key": prompt["key"], "name": prompt["name"], "layer": prompt["layer"], "kind": prompt["kind"],
            "class_index": prompt["class_index"], "shape": list(vectors.shape), "reading": reading, "tokens": tokens,
        })
    return result


# -------------------------------------------------------------------------------------- output
def format_result(result):
    """The printed tables (one per prompt)."""
    from tabulate import tabulate

    lines = [f"{result['checkpoint']}: {result['layout']} layout"
             + (f" (trainer {result['trainer']})" if result.get("trainer") else "")
             + f", backbone {result['backbone']}, token embedding {tuple(result['token_embedding_shape'])}",
             f"nearest {result['topk']} vocabulary tokens of each context vector by Euclidean distance"]
    for prompt in result["prompts"]:
        what = "input token embeddings" if prompt["kind"] == EMBEDDING else "hidden-state prompt, not token embeddings"
        cls = f", class {prompt['class_index']}" if prompt["class_index"] is not None else ""
        lines.append("")
        lines.append(f"{prompt['key']} (layer {prompt['layer']}{cls}; {what}): reads \"{prompt['reading']}\"")
        rows = [[t["position"] + 1] + [f"{n['text'] or n['token']} ({n['distance']:.4f})" for n in t["nearest"]]
                for t in prompt["tokens"]]
        headers = ["#"] + [f"top-{k + 1}" for k in range(len(prompt["tokens"][0]["nearest"]) if rows else 0)]
        lines.append(tabulate(rows, headers=headers))
    for note in result["notes"]:
        lines.append("")
        lines.append(f"note: {note}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", metavar="RUN_OR_CHECKPOINT", help="a run's output dir or a checkpoint file")
    parser.add_argument("--topk", type=int, default=5, help="nearest tokens per context vector (default 5)")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")
    parser.add_argument("--backbone",
                        help="CLIP whose token embeddings to use (default: the run's MODEL.BACKBONE.NAME)")
    parser.add_argument("--epoch", type=int, help="read model.pth.tar-EPOCH of a run dir")
    parser.add_argument("--weights", help="weights file of an openclip: backbone (default: the run's "
                                          "MODEL.BACKBONE.WEIGHTS)")
    args = parser.parse_args(argv)
    try:
        result = interpret(args.source, topk=args.topk, backbone=args.backbone, epoch=args.epoch,
                           weights=args.weights)
        print(format_result(result))
        if args.json:
            folder = os.path.dirname(os.path.abspath(args.json))
            os.makedirs(folder, exist_ok=True)
            with open(args.json, "w") as handle:
                json.dump(result, handle, indent=2)
                handle.write("\n")
            print(f"\nJSON written to {args.json}")
    except (InterpretError, OSError) as err:
        print(f"error: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
