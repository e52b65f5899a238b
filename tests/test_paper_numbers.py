"""splitlab/paper_numbers.json holds the papers' own numbers, each from the table it names (checked by hand against
the paper texts; this table is the record of that check)."""
from __future__ import annotations

import json

from tests.conftest import ROOT

# (paper, table, row, metric, value): paper 1 = Charakorn et al. (SPLIT), paper 2 = Ma et al., ICLR 2021
EXPECTED = [
    (1, "Table 1", "r=1", "recon", 0.9839), (1, "Table 1", "r=1", "resample_z_l", 0.8728),
    (1, "Table 1", "r=1", "resample_z_g", 0.1326), (1, "Table 1", "r=2", "resample_z_l", 0.8443),
    (1, "Table 1", "r=4", "resample_z_l", 0.7356), (1, "Table 1", "r=8", "resample_z_l", 0.5919),
    (1, "Table 1", "r=8", "resample_z_g", 0.1103),
    (1, "Table 2", "GMVAE K=10", "cluster_acc", 0.357), (1, "Table 2", "SPLIT-GMVAE K=10", "cluster_acc", 0.408),
    (1, "Table 2", "GMVAE K=30", "cluster_acc", 0.611), (1, "Table 2", "SPLIT-GMVAE K=30", "cluster_acc", 0.735),
    (2, "Table 1", "refined Glow", "bpd", 3.33), (2, "Table 1", "flow VAE", "bpd", 3.27),
    (2, "Table 2", "refined Glow", "fid", 46.50), (2, "Table 2", "flow VAE", "fid", 37.52),
    (2, "Table 3", "baseline (z conditions only the prior of v)", "bpd", 3.31),
    (2, "Table 3", "baseline (z conditions only the prior of v)", "fid", 43.34), (2, "Table 3", "flow VAE", "bpd", 3.27),
    (2, "Table 3", "flow VAE", "fid", 37.52),
    (2, "Table 4", "raw pixels", "probe_acc_pixels", 0.3532), (2, "Table 4", "flow VAE", "probe_acc_z_g", 0.5953),
    (2, "Table 4", "flow VAE", "probe_acc_z_l", 0.1716),
]
KEYS = {(1, "Table 1"): "table1", (1, "Table 2"): "table2", (2, "Table 1"): "flow_table1", (2, "Table 2"): "flow_table2",
        (2, "Table 3"): "flow_table3", (2, "Table 4"): "flow_table4"}


def test_every_paper_number_matches_its_table():
    numbers = json.loads((ROOT / "splitlab" / "paper_numbers.json").read_text())
    seen = set()
    for paper, table, row, metric, value in EXPECTED:
        entry = numbers[KEYS[(paper, table)]]
        assert f"{table}:" in entry["source"] and ("Charakorn" in entry["source"] or paper == 2 or table != "Table 1")
        assert entry["rows"][row][metric][0] == value, (paper, table, row, metric)
        seen.add((KEYS[(paper, table)], row, metric))
    stored = {(k, row, m) for k, t in numbers.items() if k in KEYS.values() for row, ms in t["rows"].items() for m in ms}
    unchecked = {s for s in stored if s not in seen and not s[2].startswith("resample") and s[2] != "recon"}
    assert not unchecked, unchecked  # every stored number is in the table above (Table 1's other rows: by pattern)
    assert "Tan et al." not in json.dumps(numbers)
