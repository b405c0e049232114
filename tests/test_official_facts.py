"""The recorded facts of the official repositories (tests/official_facts/facts.json) and their reader.

tests/test_lineage_scripts.py and tests/test_bmip_scripts.py compare our configs and scripts with
these facts on every machine. Here, always: the file records everything the manifest in
tests/helpers/official_facts.py lists, and the readers that produce facts from official files
work (on small files written here). With PROMPTCLIP_OFFICIAL_REPOS set (docs/DEVELOPING.md): the
recorded facts equal the facts of the live official files, so they cannot go stale silently.
Those live tests are only defined when the variable is set: a plain run neither runs nor skips
them.
"""
import re

import pytest

from tests.helpers import official_facts as facts

LIVE = facts.live_root() is not None


# --- always: the recorded file and the readers ----------------------------------------------------

def test_facts_file_records_every_listed_file_with_its_commit():
    repositories = facts.load()["repositories"]
    assert sorted(repositories) == sorted(facts.REPOSITORIES)
    for repo, entry in repositories.items():
        assert re.fullmatch(r"[0-9a-f]{40}", entry["commit"]), repo
        assert list(entry["scripts"]) == list(facts.SCRIPTS[repo])
        configs = set(entry["configs"])
        assert set(facts.CONFIG_FILES[repo]) <= configs
        for folder in facts.CONFIG_FOLDERS[repo]:
            assert any(path.startswith(folder + "/") for path in configs), (repo, folder)
        listed = facts.CONFIG_FOLDERS[repo]
        assert all(path in facts.CONFIG_FILES[repo] or path.rsplit("/", 1)[0] in listed for path in configs)


def test_recorded_scripts_expand_with_their_own_variables():
    """Every ${NAME} a recorded command uses is a positional argument, a variable of the script or DATA."""
    for repo, kind, path in facts.recorded_entries():
        if kind == "scripts":
            script = facts.recorded_script(repo, path)
            args = [f"<{name}>" for name in script["positional"]]
            command = facts.official_command(script, args, DATA="<DATA>")
            assert "$" not in " ".join(command), (repo, path)
            assert command[:2] == ["--root", "<DATA>"], (repo, path)


def test_config_facts_are_the_yaml_leaves():
    text = "A:\n  B:\n    C: 1e-5\n  D: (224, 224)\n  E: [1, 2]\nF: True\nG: {}\nH: \"None\"\n"
    assert facts.config_facts(text) == {"A.B.C": "1e-5", "A.D": "(224, 224)", "A.E": [1, 2], "F": True, "G": {},
                                        "H": "None"}


SCRIPT = """#!/bin/bash
#cd ../..
DATA="/some/machine/path"
TRAINER=X
DATASET=$1
SEED=$2
# CFG=commented_out
CFG=$3
SHOTS=16
DIR=output/${DATASET}/${TRAINER}/${CFG}/seed${SEED}
if [ -d "$DIR" ]; then
    python train.py \\
    --root ${DATA} \\
    --old-branch
else
    python train.py \\
    --root ${DATA} \\
    --output-dir ${DIR}  \\
    --eval-only \\
    DATASET.NUM_SHOTS ${SHOTS}
fi
"""


def test_script_facts_read_arguments_variables_and_the_last_call():
    read = facts.script_facts(SCRIPT)
    assert read == {
        "positional": ["DATASET", "SEED", "CFG"],
        "variables": {"TRAINER": "X", "SHOTS": "16", "DIR": "output/${DATASET}/${TRAINER}/${CFG}/seed${SEED}"},
        "train_py": ["--root", "${DATA}", "--output-dir", "${DIR}", "--eval-only", "DATASET.NUM_SHOTS", "${SHOTS}"],
    }
    assert facts.official_command(read, ["d", "1", "c"], DATA="/data") == [
        "--root", "/data", "--output-dir", "output/d/X/c/seed1", "--eval-only", "DATASET.NUM_SHOTS", "16"]
    with pytest.raises(AssertionError):
        facts.official_command(read, ["d", "1"], DATA="/data")


def test_split_command_ignores_flag_order_but_not_option_order():
    a = ["--seed", "1", "--eval-only", "--best", "--device", "cpu", "DATASET.NUM_SHOTS", "16", "A.B", "x"]
    b = ["--best", "--device", "cpu", "--seed", "1", "--eval-only", "DATASET.NUM_SHOTS", "16", "A.B", "x"]
    assert facts.split_command(a) == facts.split_command(b) == (
        {"--seed": "1", "--eval-only": True, "--best": True, "--device": "cpu"}, ["DATASET.NUM_SHOTS", "16", "A.B", "x"])
    assert facts.split_command(a[:6] + ["A.B", "x", "DATASET.NUM_SHOTS", "16"]) != facts.split_command(a)


def test_the_folder_comes_from_the_environment_variable(tmp_path):
    assert facts.live_root({}) is None
    assert facts.live_root({facts.ENV_VAR: ""}) is None
    environ = {facts.ENV_VAR: str(tmp_path)}
    assert facts.live_root(environ) == tmp_path
    with pytest.raises(AssertionError, match=r"no folder KaiyangZhou\+CoOp for KaiyangZhou/CoOp"):
        facts.live_repo(facts.COOP, environ)
    (tmp_path / "KaiyangZhou+CoOp" / "configs").mkdir(parents=True)
    assert facts.live_repo(facts.COOP, environ) == tmp_path / "KaiyangZhou+CoOp"
    with pytest.raises(AssertionError, match="KaiyangZhou/CoOp has no configs/x.yaml"):
        facts.live_file(facts.COOP, "configs/x.yaml", environ)


# --- with PROMPTCLIP_OFFICIAL_REPOS: the record against the live repositories ----------------------

if LIVE:
    @pytest.mark.parametrize("repo,kind,path", facts.recorded_entries())
    def test_recorded_facts_match_the_official_file(repo, kind, path):
        recorded = facts.load()["repositories"][repo][kind][path]
        assert facts.facts_of_live_file(repo, kind, path) == recorded, (
            f"{repo} {path} changed: check ours, then regenerate tests/official_facts/facts.json "
            f"(python -m tests.helpers.official_facts --write)")

    @pytest.mark.parametrize("repo,folder", [(r, f) for r in facts.REPOSITORIES for f in facts.CONFIG_FOLDERS[r]])
    def test_recorded_config_folders_are_the_official_folders(repo, folder):
        recorded = sorted(p for p in facts.load()["repositories"][repo]["configs"] if p.startswith(folder + "/"))
        assert recorded == facts.live_config_folder(repo, folder)
