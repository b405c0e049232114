"""Mean BMIP aggregation weight w per layer and branch (the paper's Figure 6).

The vision weights depend on the images, so the trained model is run over
test images and every layer's w is averaged. Takes train.py's own arguments:

    python tools/bmip_weights.py --out weights.png [--max-batches 20] -- \\
        --root $DATA --trainer BMIP --dataset-config-file configs/datasets/eurosat.yaml \\
        --config-file configs/trainers/BMIP/BMIP_ctx2_dp9_lr2.yaml \\
        --model-dir output/.../seed1 [--load-epoch 10] DATASET.SUBSAMPLE_CLASSES base

Writes ``<out>.json`` (per layer, per prompt token) and the PNG when
matplotlib is installed (otherwise prints the table).
"""
import argparse
import itertools
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import train  # noqa: E402
from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402


def collect_weights(trainer, max_batches):
    """{branch: {layer: [mean w per prompt token]}} over ``max_batches`` test batches."""
    learner = trainer.prompt_learner
    if getattr(learner, "aggregation", None) != "attention_weighted":
        raise ValueError("the checkpoint's config is not BMIP with TRAINER.BMIP.AGGREGATION attention_weighted")
    learner.weight_recorder = {}
    trainer.set_model_mode("eval")
    with torch.no_grad(), trainer.evaluation_context():
        for batch in itertools.islice(trainer.test_loader, max_batches):
            image, _ = trainer.parse_batch_test(batch)
            trainer.model_inference(image)
    records, learner.weight_recorder = learner.weight_recorder, None
    out = {"vision": {}, "text": {}}
    for (branch, layer), values in sorted(records.items()):
        out[branch][layer] = torch.stack(values).mean(0).tolist()
    return out


def plot(weights, path):
    """Line plot of the mean w per layer for both branches; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for branch, marker in (("vision", "o"), ("text", "s")):
        layers = sorted(weights[branch])
        if layers:
            ax.plot(layers, [sum(weights[branch][i]) / len(weights[branch][i]) for i in layers],
                    marker=marker, label=branch)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean w (weight of the own prompt)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return True


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output PNG path (JSON written beside it)")
    parser.add_argument("--max-batches", type=int, default=20)
    own = parser.parse_args(argv[:split])
    args = train.build_parser().parse_args(argv[split + 1:])
    if not args.model_dir:
        parser.error("give the trained run with --model-dir (after --)")
    cfg = train.setup_cfg(args)
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    trainer.load_model(args.model_dir, epoch=args.load_epoch)
    weights = collect_weights(trainer, own.max_batches)
    json_path = os.path.splitext(own.out)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump(weights, f, indent=1)
    print(f"{'layer':>5} {'vision w':>9} {'text w':>9}")
    for layer in sorted(set(weights["vision"]) | set(weights["text"])):
        cells = [f"{sum(weights[b][layer]) / len(weights[b][layer]):9.3f}" if layer in weights[b] else f"{'-':>9}"
                 for b in ("vision", "text")]
        print(f"{layer:>5} {cells[0]} {cells[1]}")
    if plot(weights, own.out):
        print(f"wrote {own.out} and {json_path}")
    else:
        print(f"wrote {json_path}; install matplotlib for the PNG (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
