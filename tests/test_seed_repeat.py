"""The seed-repeat table reads run logs and gives the right mean ± std."""
import json

from benchmarks.seed_repeat import table


def test_table_mean_and_std_from_records():
    recs = [{"metrics": {"test/cluster_acc": v, "val/x": 1.0}} for v in (0.5, 0.7, 0.6)]
    out = table(recs)
    assert "| test/cluster_acc | 0.6 ± 0.1 | 3 | 0.5, 0.7, 0.6 |" in out
    assert "val/x" not in out
    json.dumps(recs)
