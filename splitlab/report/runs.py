"""Reading run folders, grouping them into seed groups, mean ± std: the report's data layer."""
from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

# keys that differ between seeds of one setting without making it another setting
VOLATILE = ("seed_everything", "run", "trainer.default_root_dir", "trainer.logger", "ckpt_path", "trainer.callbacks",
            "trainer.devices", "trainer.accelerator", "trainer.num_nodes", "trainer.strategy", "data.init_args.root",
            "data.init_args.cub_root", "data.init_args.num_workers", "trainer.enable_progress_bar")


@dataclass
class Run:
    """One run folder: its config, final metrics per stage and logged history."""

    folder: str
    name: str
    seed: int | None
    config: dict[str, Any]
    records: dict[str, dict[str, Any]]  # stage ("fit", "validate", "test") -> metrics_<stage>.json
    history: list[dict[str, Any]] = field(default_factory=list)

    def metric(self, key: str) -> float | None:
        """The value of ``key`` (e.g. ``test/table1_gap``) from the latest record that has it."""
        for stage in ("test", "validate", "fit"):
            v = self.records.get(stage, {}).get("metrics", {}).get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                return float(v)
        return None

    @property
    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in flatten(self.config).items() if not k.startswith(VOLATILE)}


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}; lists are kept whole (as JSON text)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(d, sort_keys=True) if isinstance(d, list) else d
    return out


def _is_run(folder: str) -> bool:
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return "config.yaml" in names or any(n.startswith("metrics") and n.endswith(".json") for n in names)


def find_run_folders(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """Run folders given or found under ``paths``, and a message for each path with none."""
    found, problems = [], []
    for p in paths:
        if not os.path.isdir(p):
            problems.append(f"{p}: no such folder")
            continue
        here = [p] if _is_run(p) else []
        for root, dirs, _ in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d not in ("wandb", "checkpoints", "images", ".git"))
            here += [os.path.join(root, d) for d in dirs if _is_run(os.path.join(root, d))]
        if not here:
            problems.append(f"{p}: no run folders (a run folder holds config.yaml and metrics_<stage>.json)")
        found += here
    return sorted(dict.fromkeys(os.path.normpath(f) for f in found)), problems


def read_run(folder: str) -> Run:
    """One run folder -> :class:`Run`. Raises ValueError with a one-line reason when it cannot be used."""
    config: dict[str, Any] = {}
    if os.path.isfile(os.path.join(folder, "config.yaml")):
        try:
            with open(os.path.join(folder, "config.yaml")) as f:
                config = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"config.yaml unreadable ({type(e).__name__})") from e
    records = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("metrics_") and name.endswith(".json"):
            try:
                with open(os.path.join(folder, name)) as f:
                    records[name[len("metrics_"):-len(".json")]] = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"{name} unreadable ({type(e).__name__}: a run that was killed while writing?)") from e
    if not records and os.path.isfile(os.path.join(folder, "metrics.json")):
        try:
            with open(os.path.join(folder, "metrics.json")) as f:
                rec = json.load(f)
            records[str(rec.get("stage", "fit"))] = rec
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"metrics.json unreadable ({type(e).__name__})") from e
    if not records:
        raise ValueError("no metrics_<stage>.json: the run did not finish a fit, validate or test")
    any_rec = next(iter(records.values()))
    name = any_rec.get("config") or os.path.basename(os.path.normpath(folder))
    seed = any_rec.get("seed", config.get("seed_everything"))
    history = []
    hist = os.path.join(folder, "history.jsonl")
    if os.path.isfile(hist):
        with open(hist) as f:
            for line in f:
                try:
                    history.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
    return Run(folder=folder, name=str(name), seed=seed if isinstance(seed, int) else None, config=config,
               records=records, history=history)


def read_runs(paths: Iterable[str]) -> tuple[list[Run], list[str]]:
    folders, problems = find_run_folders(paths)
    runs = []
    for f in folders:
        try:
            runs.append(read_run(f))
        except ValueError as e:
            problems.append(f"{f}: {e}")
    return runs, problems


# --------------------------------------------------------------------------- grouping and statistics
@dataclass
class Group:
    """Runs of one setting (seeds of one config); ``label`` names it in tables."""

    name: str
    label: str
    runs: list[Run]

    def values(self, key: str) -> list[float]:
        return [v for v in (r.metric(key) for r in self.runs) if v is not None]

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


def group_runs(runs: list[Run]) -> tuple[list[Group], list[str]]:
    """Group by config name; split a name whose runs differ in settings, saying which keys differ."""
    by_name: dict[str, list[Run]] = {}
    for r in runs:
        by_name.setdefault(r.name, []).append(r)
    groups, notes = [], []
    for name, rs in sorted(by_name.items()):
        parts: dict[str, list[Run]] = {}
        for r in rs:
            parts.setdefault(json.dumps(r.settings, sort_keys=True, default=str), []).append(r)
        if len(parts) == 1:
            groups.append(Group(name, name, rs))
            continue
        settings = [json.loads(k) for k in parts]
        keys = sorted({k for s in settings for k in s} - {k for k in settings[0] if all(s.get(k) == settings[0].get(k) for s in settings)})
        notes.append(f"runs of {name} differ in {', '.join(keys)}: grouped apart")
        for key_text, members in parts.items():
            s = json.loads(key_text)
            label = f"{name} [" + ", ".join(f"{k.rsplit('.', 1)[-1]}={s.get(k)}" for k in keys) + "]"
            groups.append(Group(name, label, members))
    return groups, notes


def mean_std(values: list[float]) -> tuple[float, float | None, int]:
    """(mean, sample std or None for one value, n)."""
    if not values:
        return math.nan, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def fmt(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± std (n)``; ``—`` for no values."""
    m, s, n = mean_std(values)
    if n == 0:
        return "—"
    text = f"{m * scale:.{digits}f}"
    return text + (f" ± {s * scale:.{digits}f}" if s is not None else "") + f" ({n})"


def stage_of(group: Group, metric: str) -> str | None:
    """``test`` if the group has ``test/<metric>``, else ``val``, else None."""
    for stage in ("test", "val"):
        if group.values(f"{stage}/{metric}"):
            return stage
    return None
