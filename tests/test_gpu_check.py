"""benchmarks/gpu_check.py runs end to end (its CPU smoke mode): a table printed, a JSON written, every rate measured."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_gpu_check_smoke_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| config | precision |" in r.stdout and "bf16-mixed" in r.stdout
    data = json.loads(out.read_text())
    assert data["smoke"] and data["device"] == "cpu" and len(data["rows"]) == 4  # 2 configs x fp32 / bf16-mixed
    for row in data["rows"]:
        assert math.isfinite(row["fit_img_s"]) and row["fit_img_s"] > 0 and row["model_only_img_s"] > 0
