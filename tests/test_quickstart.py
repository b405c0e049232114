"""README's main job: scripts/quickstart.sh end to end on the built-in smoke assets."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_quickstart_runs_base2new_and_prints_the_table(tmp_path):
    out = tmp_path / "qs"
    env = dict(os.environ, PYTHON=sys.executable, OUTPUT=str(out))
    proc = subprocess.run(["bash", str(REPO / "scripts/quickstart.sh")], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    header, eurosat = table[0], next(line for line in table if line.startswith("| EuroSAT"))
    for method in ("ZeroshotCLIP/vit_b16 Base", "CoOp/vit_b16_ep100 New", "MaPLe/vit_b16_c2_ep5_batch4_2ctx HM"):
        assert method in header
    # the CoOp cells are the numbers in its results.json files
    run = "eurosat/shots_4/CoOp/vit_b16_ep100/seed1/results.json"
    base = json.loads((out / "base2new/train_base" / run).read_text())["metrics"]["accuracy"]
    new = json.loads((out / "base2new/test_new" / run).read_text())["metrics"]["accuracy"]
    cells = [c.strip() for c in eurosat.strip("|").split("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert float(cells[columns.index("CoOp/vit_b16_ep100 Base")]) == pytest.approx(base, abs=0.005)
    assert float(cells[columns.index("CoOp/vit_b16_ep100 New")]) == pytest.approx(new, abs=0.005)
    hm = 2 * base * new / (base + new) if base + new else 0.0
    assert float(cells[columns.index("CoOp/vit_b16_ep100 HM")]) == pytest.approx(hm, abs=0.005)
    # rerunning skips every finished run
    again = subprocess.run(["bash", str(REPO / "scripts/quickstart.sh")], cwd=str(tmp_path), env=env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    assert not list(Path(out / "base2new").rglob("log.txt-*"))  # no train.py ran again in any run dir
