"""Write synthetic CoPrompt descriptions for MiniShapes: gpt_file/minishapes_prompt.json.

CoPrompt compares the prompted text features with the frozen CLIP's embedding of LLM-written
class descriptions. No LLM is reachable on our machines, so for the synthetic MiniShapes
benchmark the descriptions are composed from each class's colour and shape by fixed phrase
tables (documented as synthetic in docs/METHODS.md). The file has the official format
({class name: [sentences]}, the same number of sentences for every class).

    python tools/make_minishapes_descriptions.py [--out gpt_file/minishapes_prompt.json]
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from datasets import minishapes as world  # noqa: E402

SHAPE_FACTS = {
    "circle": "a round outline with no corners",
    "square": "four equal sides and four right angles",
    "triangle": "three straight sides and three corners",
    "star": "five pointed arms around its centre",
    "cross": "two bars crossing at right angles",
    "ring": "a round band with a hole in the middle",
    "heart": "two rounded lobes above a pointed tip",
    "moon": "a curved crescent like a thin slice of a disc",
}
COLOUR_FACTS = {
    "red": "the colour of ripe tomatoes",
    "orange": "the colour of a ripe orange",
    "yellow": "the colour of a lemon",
    "green": "the colour of fresh grass",
    "blue": "the colour of a clear sky",
    "purple": "the colour of lavender",
    "pink": "the colour of a flamingo",
    "brown": "the colour of tree bark",
}
SENTENCES = (
    "a {colour} {shape} is a flat {shape} painted in {colour}.",
    "a {colour} {shape} has {shape_fact}.",
    "the {shape} is {colour}, {colour_fact}.",
    "a simple {colour} figure shaped like a {shape}.",
    "a {shape} drawn as one solid {colour} area on a plain background.",
    "a {colour} shape with {shape_fact}.",
    "an icon of a {shape} coloured {colour}.",
    "a {colour} {shape}: {colour_fact}, with {shape_fact}.",
    "a small {colour} {shape} in the middle of the image.",
    "a graphic of a {shape}, filled in {colour}.",
)


def descriptions():
    """{class name: [sentences]} for the 64 MiniShapes classes, in label order."""
    table = {}
    for colour, shape in world.compositions():
        names = dict(colour=world.COLOUR_NAMES[colour], shape=world.SHAPES[shape])
        facts = dict(colour_fact=COLOUR_FACTS[names["colour"]], shape_fact=SHAPE_FACTS[names["shape"]])
        table[world.classname(colour, shape)] = [s.format(**names, **facts) for s in SENTENCES]
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "..", "gpt_file", "minishapes_prompt.json"))
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(descriptions(), handle, indent=1)
        handle.write("\n")
    print(f"wrote {len(descriptions())} classes x {len(SENTENCES)} descriptions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
