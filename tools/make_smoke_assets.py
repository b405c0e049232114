"""Write the assets of the smoke run: a tiny *random* CLIP (OpenAI key format)
and a small generated EuroSAT-layout dataset.

    python tools/make_smoke_assets.py DIR    ->  DIR/tiny_clip.pt, DIR/data/eurosat/...

The same generators the test suite uses (tests/helpers). Accuracy on these
assets means nothing: they exercise the whole pipeline without any download.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from tests.helpers.fake_datasets import make_eurosat  # noqa: E402
from tests.helpers.tiny_clip import save_tiny_clip  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    args = parser.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    clip_path = os.path.join(args.outdir, "tiny_clip.pt")
    if not os.path.exists(clip_path):
        save_tiny_clip(clip_path, kind="vit", seed=0)
    data = os.path.join(args.outdir, "data")
    if not os.path.isdir(os.path.join(data, "eurosat")):
        make_eurosat(data, with_split=True)
    print(clip_path)
    print(data)


if __name__ == "__main__":
    main()
