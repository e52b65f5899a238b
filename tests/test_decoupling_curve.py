"""benchmarks/decoupling_curve.py: the config it trains parses with the CLI, the two patterns of paper 2 are read
right on known numbers, and the report turns history.jsonl rows into the table, JSON and PNG."""
from __future__ import annotations

import json

import yaml

from benchmarks import decoupling_curve as dc
from tests.conftest import cli

PAPER = {"probe_acc_z_g": 0.5953, "probe_acc_z_l": 0.1716, "probe_acc_pixels": 0.3532}  # paper 2 Table 4


def test_patterns_on_the_papers_table_4_and_on_a_model_that_keeps_the_digit_in_v():
    p = dc.patterns({**PAPER, "probe_colour_r2_z_g": 0.9, "probe_colour_r2_z_l": 0.2, "probe_colour_r2_pixels": 0.95,
                     "switch_colour_from_z_share": 0.85})
    assert p["digit"] and p["colour"] and p["switch"] and abs(p["ratio"] - 0.283) < 0.001
    # our 242-step quick-start: v reads the digit far better than z and than the pixels; v keeps the colours
    q = dc.patterns({"probe_acc_z_g": 0.11, "probe_acc_z_l": 0.83, "probe_acc_pixels": 0.236, "probe_colour_r2_z_g": 0.835,
                     "probe_colour_r2_z_l": 0.954, "probe_colour_r2_pixels": 0.984, "switch_colour_from_z_share": 0.478})
    assert not (q["digit"] or q["colour"] or q["switch"]) and q["ratio"] > 5
    # z above v but v still above half of the pixels' lead over chance: not the pattern
    assert not dc.patterns({"probe_acc_z_g": 0.6, "probe_acc_z_l": 0.3, "probe_acc_pixels": 0.35})["digit"]


def test_the_curve_config_parses_with_a_time_limit_and_evaluations_every_few_epochs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = dc.write_config("flow_vae", 60, 3)
    config = yaml.safe_load(open(path))
    assert config["trainer"]["max_time"] == "00:01:00:00" and config["trainer"]["max_epochs"] == -1
    assert {cb["init_args"]["every_n_epochs"] for cb in config["trainer"]["callbacks"]} == {3}
    assert config["model"]["init_args"]["weight_norm"] is True  # the authors' layers, as the curve was measured
    assert dc.write_config("glow", 90.5, 2) and yaml.safe_load(open("runs/decoupling_curve/glow.yaml"))["trainer"][
        "max_time"] == "00:01:30:30"
    r = cli(["fit", "--config", str(tmp_path / path), "--print_config"])
    assert r.returncode == 0, r.stderr
    assert "max_time: 00:01:00:00" in r.stdout and "check_val_every_n_epoch: 3" in r.stdout


def test_report_writes_the_table_json_and_png(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dc, "RESULTS", str(tmp_path / "results"))
    run = tmp_path / "runs" / "decoupling_curve" / "flow_vae" / "curve"
    run.mkdir(parents=True)
    with open(run / "history.jsonl", "w") as f:
        for i, v in enumerate((0.8, 0.5, 0.16)):  # the digit leaves v over three evaluations
            m = {"val/bpd": 3.0 - i / 10, "val/probe_acc_z_g": 0.2 + i / 5, "val/probe_acc_z_l": v, "val/probe_acc_pixels": 0.35,
                 "val/switch_colour_from_z_share": 0.5 + i / 5}
            f.write(json.dumps({"step": 363 * (i + 1), "epoch": 3 * i + 2, "metrics": m}) + "\n")
        f.write(json.dumps({"step": 1200, "epoch": 9, "metrics": {"val/bpd": 2.6}}) + "\n")  # no probe: not a row
    dc.report()
    text = (tmp_path / "results" / "decoupling_curve.md").read_text()
    assert "first step with (i) on the digit: 1089; (i) on the colours: none; (ii) the switch: 1089" in text
    assert len(json.load(open(tmp_path / "results" / "decoupling_curve.json"))["flow_vae"]) == 3
    assert (tmp_path / "results" / "decoupling_curve.png").stat().st_size > 10_000
