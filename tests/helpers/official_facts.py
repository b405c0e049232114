"""What the official repositories set, recorded as data, and where to find the repositories.

Our configs under ``configs/trainers/`` and our run scripts under ``scripts/`` follow the official
repositories of the methods:

* ``KaiyangZhou/CoOp`` (CoOp configs),
* ``muzairkhattak/multimodal-prompt-learning`` (CoCoOp, VPT, IVLP and MaPLe configs and scripts),
* ``LAMDASZ-ML/BMIP`` (the BMIP config and scripts).

The tests compare ours with *facts* about those files recorded in ``tests/official_facts/facts.json``
(written by :func:`collect`, our own key -> value format, not copies of the files), so they run on
every fresh clone. When the environment variable ``PROMPTCLIP_OFFICIAL_REPOS`` names a folder
holding the repositories as ``<folder>/<owner>+<name>/`` (e.g.
``$PROMPTCLIP_OFFICIAL_REPOS/KaiyangZhou+CoOp/configs/trainers/CoOp/rn50.yaml``), the tests also
compare ours with the live files and check that the recorded facts still match them
(tests/test_official_facts.py). See docs/DEVELOPING.md, "Tests against the official repositories".

Facts of a config: its YAML leaves as ``{"A.B.C": value}`` (values as ``yaml.safe_load`` reads
them: ``1e-5`` and ``(224, 224)`` stay strings, as yacs receives them).
Facts of a script: ``positional`` (the variables set from ``$1``, ``$2``, ... in order),
``variables`` (every other ``NAME=value`` assignment except ``DATA``, a machine path) and
``train_py`` (the arguments after ``python train.py`` in the script's last such call, the one
a fresh run takes, with the ``${...}`` references unexpanded).

Regenerate the file after checking a change in an official repository::

    PROMPTCLIP_OFFICIAL_REPOS=/path/to/repos python -m tests.helpers.official_facts --write \\
        --commit KaiyangZhou/CoOp=<sha> --commit muzairkhattak/multimodal-prompt-learning=<sha> \\
        --commit LAMDASZ-ML/BMIP=<sha>

(``--commit`` may be left out for a repository whose folder is a git checkout.)
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ENV_VAR = "PROMPTCLIP_OFFICIAL_REPOS"
FACTS_FILE = Path(__file__).resolve().parents[1] / "official_facts" / "facts.json"

COOP = "KaiyangZhou/CoOp"
LINEAGE = "muzairkhattak/multimodal-prompt-learning"
BMIP = "LAMDASZ-ML/BMIP"
REPOSITORIES = (COOP, LINEAGE, BMIP)

# What facts.json records. Config folders are recorded whole (every *.yaml in them); the live
# check also asserts that the official folder holds no file the record lacks.
CONFIG_FOLDERS = {
    COOP: ("configs/trainers/CoOp",),
    LINEAGE: tuple(f"configs/trainers/{d}" for d in ("CoCoOp", "VPT", "IVLP", "MaPLe")),
    BMIP: (),
}
# single config files, from folders we copy only in part
CONFIG_FILES = {COOP: (), LINEAGE: (), BMIP: ("configs/trainers/BMIP/BMIP_ctx2_dp9_lr2.yaml",)}
SCRIPTS = {
    COOP: (),
    LINEAGE: tuple(
        f"scripts/{folder}/{step}{suffix}.sh"
        for folder, suffix in (("cocoop", ""), ("vpt", "_vpt"), ("language-prompting", "_lp"),
                               ("independent-vlp", "_ivlp"), ("maple", "_maple"))
        for step in ("base2new_train", "base2new_test", "xd_train", "xd_test")),
    BMIP: tuple(f"scripts/bmip/{name}.sh"
                for name in ("base2new_train_bmip", "base2new_test_bmip", "xd_train", "xd_test")),
}

# the official trainer config folder a folder of ours copies (configs/trainers/<name>)
CONFIG_REPOSITORY = {"CoOp": COOP, "CoCoOp": LINEAGE, "VPT": LINEAGE, "IVLP": LINEAGE, "MaPLe": LINEAGE,
                     "BMIP": BMIP}


def folder_name(repo):
    """``owner/name`` -> ``owner+name``, the repository's folder under $PROMPTCLIP_OFFICIAL_REPOS."""
    return repo.replace("/", "+")


# --- where the live repositories are --------------------------------------------------------------

def live_root(environ=None):
    """The folder $PROMPTCLIP_OFFICIAL_REPOS names, or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return Path(value) if value else None


def live_repo(repo, environ=None):
    """The live repository's folder. Raises AssertionError (a failure, never a skip) when the
    variable is set but the folder is not there."""
    root = live_root(environ)
    assert root is not None, f"{ENV_VAR} is not set"
    path = root / folder_name(repo)
    assert path.is_dir(), (f"{ENV_VAR}={root}: no folder {folder_name(repo)} for {repo} "
                           f"(expected layout: {root}/<owner>+<name>/configs/..., .../scripts/...)")
    return path


def live_file(repo, relpath, environ=None):
    path = live_repo(repo, environ) / relpath
    assert path.is_file(), f"{repo} has no {relpath} (looked at {path})"
    return path


# --- facts of one file ---------------------------------------------------------------------------

def config_facts(text):
    """``{"A.B.C": leaf}`` of a YAML config (an empty mapping is a leaf ``{}``)."""
    flat = {}

    def walk(tree, prefix):
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                walk(value, name + ".")
            else:
                flat[name] = value

    walk(yaml.safe_load(text) or {}, "")
    return flat


_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*$")
_POSITIONAL = re.compile(r"^\$\{?([1-9])\}?$")


def _unquote(value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def script_facts(text):
    """``{"positional": [...], "variables": {...}, "train_py": [...]}`` of a run script."""
    positional, variables, calls = {}, {}, []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _ASSIGNMENT.match(line)
        if match:
            name, value = match.group(1), _unquote(match.group(2))
            number = _POSITIONAL.match(value)
            if number:
                positional[int(number.group(1))] = name
                variables.pop(name, None)
            elif name != "DATA":
                variables[name] = value
                positional = {k: v for k, v in positional.items() if v != name}
        elif line.strip().startswith("python train.py"):
            words = []
            while True:
                part = lines[i].strip()
                continued = part.endswith("\\")
                words += part.rstrip("\\").split()
                if not continued or i + 1 >= len(lines):
                    break
                i += 1
            calls.append(words[2:])  # after "python train.py"
        i += 1
    assert sorted(positional) == list(range(1, len(positional) + 1)), f"positional arguments {positional}"
    assert calls, "no 'python train.py' call"
    return {"positional": [positional[k] for k in sorted(positional)], "variables": variables,
            "train_py": calls[-1]}


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(word, values):
    """``word`` with every ``${NAME}`` / ``$NAME`` replaced from ``values`` (recursively)."""
    def one(match):
        name = match.group(1) or match.group(2)
        assert name in values, f"{word}: no value for {name}"
        return expand(values[name], values)

    return _REFERENCE.sub(one, str(word))


def official_command(facts, args, **values):
    """The ``train.py`` arguments a script with these facts runs for positional ``args``;
    ``values`` give variables the script takes from elsewhere (``DATA``)."""
    assert len(args) == len(facts["positional"]), (facts["positional"], args)
    known = {**facts["variables"], **dict(zip(facts["positional"], args)), **values}
    return [expand(word, known) for word in facts["train_py"]]


def split_command(argv):
    """``({"--flag": value or True}, ["KEY", "VALUE", ...])`` of train.py arguments, so commands
    that give the same flags in another order compare equal."""
    flags, i = {}, 0
    while i < len(argv) and argv[i].startswith("--"):
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if nxt is not None and not nxt.startswith("--") and not re.match(r"^[A-Z][A-Z0-9_]*\.", nxt):
            assert argv[i] not in flags, f"{argv[i]} given twice"
            flags[argv[i]] = nxt
            i += 2
        else:
            flags[argv[i]] = True
            i += 1
    return flags, argv[i:]


def with_flag(argv, flag, value):
    """``argv`` with the value after ``flag`` replaced (the flag must be there)."""
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


# --- the recorded facts --------------------------------------------------------------------------

_LOADED = {}


def load():
    """facts.json as a dict (read once)."""
    if "facts" not in _LOADED:
        _LOADED["facts"] = json.loads(FACTS_FILE.read_text())
    return _LOADED["facts"]


def recorded_config(repo, relpath):
    configs = load()["repositories"][repo]["configs"]
    assert relpath in configs, f"facts.json records no {relpath} of {repo}"
    return configs[relpath]


def recorded_script(repo, relpath):
    scripts = load()["repositories"][repo]["scripts"]
    assert relpath in scripts, f"facts.json records no {relpath} of {repo}"
    return scripts[relpath]


def recorded_entries():
    """``[(repo, "configs" | "scripts", relpath)]`` of everything facts.json records."""
    return [(repo, kind, relpath) for repo, entry in load()["repositories"].items()
            for kind in ("configs", "scripts") for relpath in entry[kind]]


def facts_of_live_file(repo, kind, relpath, environ=None):
    text = live_file(repo, relpath, environ).read_text()
    return config_facts(text) if kind == "configs" else script_facts(text)


def live_config_folder(repo, folder, environ=None):
    """Paths (relative to the repository) of every *.yaml in a live config folder."""
    base = live_repo(repo, environ)
    return sorted(str(p.relative_to(base)) for p in (base / folder).glob("*.yaml"))


def collect(environ=None, commits=None, require_commit=True):
    """The facts of every recorded file, read from the live repositories."""
    commits = commits or {}
    repositories = {}
    for repo in REPOSITORIES:
        base = live_repo(repo, environ)
        commit = commits.get(repo)
        if commit is None and (base / ".git").exists():
            commit = subprocess.run(["git", "-C", str(base), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, check=True).stdout.strip()
        assert commit or not require_commit, f"{repo}: not a git checkout; give --commit {repo}=<sha>"
        config_paths = [p for folder in CONFIG_FOLDERS[repo] for p in live_config_folder(repo, folder, environ)]
        config_paths += CONFIG_FILES[repo]
        repositories[repo] = {
            "commit": commit,
            "configs": {p: facts_of_live_file(repo, "configs", p, environ) for p in sorted(config_paths)},
            "scripts": {p: facts_of_live_file(repo, "scripts", p, environ) for p in SCRIPTS[repo]},
        }
    return {
        "about": ("Facts of the official repositories' configs and run scripts that our tests compare "
                  "ours with; written by tests/helpers/official_facts.py (see its docstring and "
                  "docs/DEVELOPING.md, 'Tests against the official repositories')."),
        "repositories": repositories,
    }


def dumps(facts):
    """JSON with nested objects indented and every other value (a config leaf, a script's word
    list) on one line."""
    def render(value, indent):
        if not isinstance(value, dict) or not value:
            return json.dumps(value)
        inner = indent + " "
        items = [f"{inner}{json.dumps(key)}: {render(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"

    return render(facts, "") + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {FACTS_FILE.name} (default: compare)")
    parser.add_argument("--commit", action="append", default=[], metavar="OWNER/NAME=SHA",
                        help="commit of a repository folder that is not a git checkout")
    args = parser.parse_args(argv)
    if live_root() is None:
        parser.error(f"{ENV_VAR} is not set")
    facts = collect(commits=dict(c.split("=", 1) for c in args.commit), require_commit=args.write)
    text = dumps(facts)
    if args.write:
        FACTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        FACTS_FILE.write_text(text)
        print(f"wrote {FACTS_FILE}")
        return 0
    recorded = json.loads(FACTS_FILE.read_text())
    for repo in REPOSITORIES:  # commits are not compared: a materialised folder may not know its own
        recorded["repositories"][repo]["commit"] = facts["repositories"][repo]["commit"]
    same = recorded == facts
    print("facts.json matches the live repositories" if same else "facts.json differs from the live repositories")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
