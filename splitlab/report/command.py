"""``python -m splitlab report``: read, group, write report.md and the PNGs, optionally log to W&B."""
from __future__ import annotations

import argparse
import os
import sys

from splitlab.report.figures import _slug, figures
from splitlab.report.runs import Group, group_runs, mean_std, read_runs
from splitlab.report.tables import all_metrics_table, fig8, flow_tables, load_paper_numbers, table1, table2


def build_report(paths: list[str], out: str) -> tuple[str, list[str], list[str], list[Group]]:
    """Read, group, write ``<out>/report.md`` and the PNGs. Returns (markdown, figure paths, problems, groups)."""
    runs, problems = read_runs(paths)
    groups, notes = group_runs(runs)
    os.makedirs(out, exist_ok=True)
    paper = load_paper_numbers()
    sections = [s for s in (table1(groups, paper), table2(groups, paper), fig8(groups, paper),
                            flow_tables(groups, paper)) if s]
    figs, fig_note = figures(groups, out) if groups else ([], None)
    md = [f"# splitlab report\n\n{len(runs)} runs in {len(groups)} groups, from {', '.join(paths)}. "
          "Numbers are mean ± std (n) over the seeds of a group; `—`: not logged."]
    if notes:
        md.append("**Groups split apart:**\n\n" + "\n".join(f"- {n}" for n in notes))
    md += sections or ["No run logged a metric of the papers' tables (Table 1, Table 2, Fig. 8, paper 2)."]
    if figs:
        md.append("## Figures\n\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figs))
    if fig_note:
        md.append(f"_{fig_note}_")
    if groups:
        md.append("## Every metric, per group\n\n" + all_metrics_table(groups))
    if problems:
        md.append("## Skipped\n\n" + "\n".join(f"- {p}" for p in problems))
    text = "\n\n".join(md) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text, figs, problems, groups


def log_to_wandb(text: str, figs: list[str], groups: list[Group], out: str) -> str:
    """One W&B run holding the tables (W&B Tables) and figures (images); offline without an account."""
    import wandb

    from splitlab.loggers import wandb_credentials_available

    mode = os.environ.get("WANDB_MODE") or ("online" if wandb_credentials_available() else "offline")
    run = wandb.init(project="splitlab", job_type="report", name="report", dir=out, mode=mode, reinit=True)
    for g in groups:
        keys = sorted({k for r in g.runs for rec in r.records.values() for k in rec.get("metrics", {})})
        table = wandb.Table(columns=["metric", "mean", "std", "n"])
        for k in keys:
            m, s, n = mean_std(g.values(k))
            if n:
                table.add_data(k, m, s, n)
        run.log({f"report/{_slug(g.label)}": table})
    for p in figs:
        run.log({f"figures/{os.path.basename(p)}": wandb.Image(p)})
    run.summary["report_markdown"] = text
    run.finish()
    return mode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m splitlab report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--out", default="report", help="output folder (report.md and PNGs)")
    p.add_argument("--wandb", action="store_true", help="also log the tables and figures to one W&B run")
    a = p.parse_args(argv)
    text, figs, problems, groups = build_report(a.runs, a.out)
    for msg in problems:
        print(f"splitlab report: skipped {msg}", file=sys.stderr)
    if not groups:
        print(f"\nsplitlab error: no usable runs under {', '.join(a.runs)}. A run folder is what `lightning fit` "
              "writes (trainer.default_root_dir): config.yaml and metrics_<stage>.json. Give such folders, or "
              "folders that hold them.", file=sys.stderr)
        return 2
    if a.wandb:
        mode = log_to_wandb(text, figs, groups, a.out)
        print(f"splitlab report: logged to W&B ({mode})")
    print(text)
    print(f"splitlab report: written to {os.path.abspath(os.path.join(a.out, 'report.md'))}"
          + (f" and {len(figs)} figures" if figs else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
