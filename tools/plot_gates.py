"""Plot the learned per-layer fusion weights of a trained checkpoint (like Bloom's Figure 6).

    python tools/plot_gates.py --checkpoint OUTPUT_DIR_OR_FILE --out gates.png [--first-layer START]

``--checkpoint`` is a checkpoint file or a run's output dir (its ``model-best.pth.tar`` or else the
newest ``model.pth.tar-N`` is used, searched one folder deep). The table of weights is always
printed; the PNG needs matplotlib (``pip install matplotlib``).

The method is recognised from the checkpoint's keys: each entry of ``READERS`` turns one method's
weights into named per-layer series. Bloom: softmax(G) of each gated branch, i.e. the share of the
branch's own prompt and of the prompt translated from the other modality. A reader for another
method (e.g. BMIP's mean aggregation weight per layer) is one more function in ``READERS``.
"""
import argparse
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from dassl.utils import load_released_checkpoint, state_dict_of, strip_module_prefix  # noqa: E402


def find_checkpoint(path):
    """The checkpoint file ``path`` names: itself, or the best/newest one inside a run dir."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--checkpoint {path}: no such file or directory")
    for pattern in ("model-best.pth.tar", "*/model-best.pth.tar"):
        found = sorted(glob.glob(os.path.join(path, pattern)))
        if found:
            return found[0]
    epochs = glob.glob(os.path.join(path, "model.pth.tar-*")) + glob.glob(os.path.join(path, "*", "model.pth.tar-*"))
    epochs = [p for p in epochs if re.search(r"model\.pth\.tar-\d+$", p)]
    if not epochs:
        raise FileNotFoundError(f"--checkpoint {path}: no model-best.pth.tar or model.pth.tar-N in it "
                                "or in its subfolders")
    return max(epochs, key=lambda p: int(p.rsplit("-", 1)[1]))


def bloom_gate_series(state_dict):
    """Bloom: {series name: per-layer weights} from ``gate_text`` / ``gate_vision`` (layers, 2)."""
    labels = {"gate_vision": ("vision", "language->vision"), "gate_text": ("language", "vision->language")}
    series = {}
    for key, (branch, translated) in labels.items():
        if key in state_dict:
            weights = state_dict[key].float().softmax(dim=-1)
            series[f"{branch}: own prompt"] = weights[:, 0].tolist()
            series[f"{branch}: {translated}"] = weights[:, 1].tolist()
    return series


# method name -> (recognises its state dict, reads its per-layer series)
READERS = {
    "Bloom": (lambda sd: "gate_text" in sd or "gate_vision" in sd, bloom_gate_series),
}


def first_fused_layer(state_dict):
    """The layer of the first row: 1 for Bloom's maple_derived layout (its layer 0 is MaPLe's linear
    coupling ``proj``, without gates), else 0."""
    keys = {k[len("prompt_learner."):] if k.startswith("prompt_learner.") else k for k in state_dict}
    return 1 if "proj.weight" in keys else 0


def read_series(state_dict):
    """(method name, {series: per-layer values}) for the first reader that recognises the weights."""
    state_dict = {k[len("prompt_learner."):] if k.startswith("prompt_learner.") else k: v
                  for k, v in strip_module_prefix(state_dict).items()}
    for method, (recognises, read) in READERS.items():
        if recognises(state_dict):
            return method, read(state_dict)

    raise ValueError("checkpoint holds no per-layer fusion weights this tool knows "
                     f"(readers: {', '.join(READERS)}); for Bloom, was it trained with FUSION add or concat?")


def format_table(series, first_layer):
    """The series as a plain-text table, one row per layer."""
    names = list(series)
    n_layers = len(next(iter(series.values())))
    widths = [max(len(n), 6) for n in names]
    lines = ["layer  " + "  ".join(n.rjust(w) for n, w in zip(names, widths))]
    for j in range(n_layers):
        cells = "  ".join(f"{series[n][j]:.4f}".rjust(w) for n, w in zip(names, widths))
        lines.append(f"{first_layer + j:>5}  {cells}")
    return "\n".join(lines)


def plot_series(method, series, first_layer, out):
    """Stacked bars per layer (one panel per branch) saved to ``out``; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    branches = {}
    for name, values in series.items():
        branches.setdefault(name.split(":")[0], []).append((name.split(": ", 1)[-1], values))
    fig, axes = plt.subplots(1, len(branches), figsize=(6 * len(branches), 3.5), squeeze=False)
    for ax, (branch, parts) in zip(axes[0], branches.items()):
        layers = [first_layer + j for j in range(len(parts[0][1]))]
        bottom = [0.0] * len(layers)
        for label, values in parts:
            ax.bar(layers, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_title(f"{method}: {branch} branch")
        ax.set_xlabel("layer")
        ax.set_ylabel("weight")
        ax.set_xticks(layers)
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or run output dir")
    parser.add_argument("--out", default="gates.png", help="PNG to write (default: gates.png)")
    parser.add_argument("--first-layer", type=int, default=None,
                        help="layer index of the first row (Bloom: TRAINER.BLOOM.START; default 0, or 1 for "
                             "the maple_derived layout, recognised from its weights)")
    args = parser.parse_args(argv)
    try:
        path = find_checkpoint(args.checkpoint)
        state_dict = state_dict_of(load_released_checkpoint(path))
        method, series = read_series(state_dict)
    except (FileNotFoundError, ValueError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    if args.first_layer is None:
        args.first_layer = first_fused_layer(state_dict)
    print(f"{method} fusion weights from {path}")
    print(format_table(series, args.first_layer))
    if plot_series(method, series, args.first_layer, args.out):
        print(f"Plot saved to {args.out}")
    else:
        print(f"matplotlib is not installed, so {args.out} was not written; "
              "install it with: pip install matplotlib", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
