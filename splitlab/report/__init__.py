"""The papers' tables and figures from logged runs, in one command.

    python -m splitlab report runs/ [more run folders ...] [--out report/] [--wandb]

Reads every run folder given or found under the given folders (a folder with
``config.yaml`` or ``metrics*.json``), groups runs by config name, and reports each metric as
mean ± std (n) over the group's seeds, the way paper 1 reports its tables. Runs of one config
name whose settings differ (not counting the seed and the run folder) are grouped apart, and
the report says which keys differ. ``report.md`` gets one table per paper result that has
runs, each with the paper's own number (``splitlab/paper_numbers.json``, with the page /
table it comes from) and the data the runs used, so a quick-start number never passes for an
SVHN one. PNG figures (``pip install splitlab[report]`` for matplotlib): Fig. 8 and Table 1 as
grouped bars with seed error bars, and metric-vs-step curves per group from each run's
``history.jsonl`` (written next to ``metrics.json`` at every validation).

Bad input never ends in a traceback: a folder with no runs, a run without metrics or with an
unreadable file is listed under "Skipped" and the report covers the good runs.

Parts: ``runs.py`` (reading and grouping run folders, mean ± std), ``tables.py`` (the papers'
tables), ``figures.py`` (PNGs), ``command.py`` (the command, W&B).
"""
from splitlab.report.command import build_report, log_to_wandb, main
from splitlab.report.figures import figures
from splitlab.report.runs import (
    Group,
    Run,
    find_run_folders,
    flatten,
    fmt,
    group_runs,
    mean_std,
    read_run,
    read_runs,
    stage_of,
)
from splitlab.report.tables import (
    all_metrics_table,
    data_description,
    fig8,
    flow_tables,
    load_paper_numbers,
    model_description,
    table1,
    table2,
)

__all__ = [
    "Group", "Run", "all_metrics_table", "build_report", "data_description", "fig8", "figures", "find_run_folders",
    "flatten", "flow_tables", "fmt", "group_runs", "load_paper_numbers", "log_to_wandb", "main", "mean_std",
    "model_description", "read_run", "read_runs", "stage_of", "table1", "table2",
]
