"""``lightning sweep FILE``: a W&B sweep file as one command line per trial, without a W&B server.

    wandb sweep cluster/sweeps/split_gmvae_svhn_k30.yaml      # with W&B: its agent runs the trials
    lightning sweep cluster/sweeps/split_gmvae_svhn_k30.yaml  # without: one `lightning fit ...` per line
    lightning sweep FILE | sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" | bash    # one line per array task
    lightning sweep FILE --check                               # every trial parses with the CLI

The same file serves both: its ``command`` (W&B's ``${program}`` and ``${args}`` macros) names our
CLI, and its ``parameters`` give a grid (``values``, or one ``value``). ``method: grid`` expands to
every combination in the file's order; ``method: random`` to ``--count`` combinations drawn with
``--seed``. W&B's distributions (``min``/``max``) and ``bayes`` need W&B's own agent. Each trial is a
plain ``lightning fit``, so it gets its own run folder and its own W&B run.
"""
from __future__ import annotations

import argparse
import itertools
import random
import shlex
import sys
from typing import Any

import yaml

from splitlab.errors import ConfigError


def load(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            sweep = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"sweep file {path} cannot be read ({e.strerror}); give the path of a sweep YAML such as "
                          "cluster/sweeps/split_gmvae_svhn_k30.yaml.") from e
    if not isinstance(sweep, dict) or not isinstance(sweep.get("parameters"), dict):
        raise ConfigError(f"{path} is not a W&B sweep file: it needs a `parameters:` mapping (and a `command:` list "
                          "naming `${{program}} fit --config <config> ${{args}}`).")
    return sweep


def grid(sweep: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The parameter names and, for each, its values (W&B's ``values`` or ``value``)."""
    names, values = [], []
    for name, spec in sweep["parameters"].items():
        if isinstance(spec, dict) and "values" in spec:
            vals = list(spec["values"])
        elif isinstance(spec, dict) and "value" in spec:
            vals = [spec["value"]]
        else:
            raise ConfigError(f"sweep parameter {name!r} has {spec!r}: only `values: [...]` or `value: x` expand into "
                              "command lines here; distributions (min / max) need W&B's agent (`wandb agent`).")
        names.append(name)
        values.append(vals)
    return names, values


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return yaml.safe_dump(v, default_flow_style=True).strip()
    return str(v)


def trials(sweep: dict[str, Any], count: int | None = None, seed: int = 0) -> list[list[str]]:
    """One argument list per trial: the file's ``command`` with ``${args}`` as ``--name=value``."""
    names, values = grid(sweep)
    points = list(itertools.product(*values))
    method = sweep.get("method", "grid")
    if method == "random":
        rng = random.Random(seed)
        points = [tuple(rng.choice(v) for v in values) for _ in range(count or len(points))]
    elif method != "grid":
        raise ConfigError(f"sweep method {method!r} needs W&B's agent (`wandb agent`); `lightning sweep` expands "
                          "`grid` and `random`.")
    elif count is not None:
        points = points[:count]
    command = sweep.get("command") or ["${program}", "fit", "${args}"]
    out = []
    for point in points:
        args = [f"--{n}={_value(v)}" for n, v in zip(names, point)]
        line: list[str] = []
        for part in command:
            if part == "${args}":
                line += args
            elif part == "${program}":
                line.append(str(sweep.get("program", "lightning")))
            elif part in ("${env}", "${interpreter}"):
                continue
            else:
                line.append(str(part))
        out.append(line)
    return out


class _Parser(Exception):
    pass


def cli_parser() -> Any:
    """The ``lightning`` argument parser (built once; parsing a trial with it instantiates nothing)."""
    from splitlab.cli import SplitlabCLI

    class ParseOnly(SplitlabCLI):
        def parse_arguments(self, parser: Any, args: Any) -> None:
            raise _Parser(parser)

    try:
        ParseOnly(args=["fit"])
    except _Parser as e:
        return e.args[0]
    raise RuntimeError("the CLI did not build its parser")


def check(lines: list[list[str]], parser: Any = None) -> None:
    """Parse every trial with the CLI: a key that is not an option stops with the CLI's one-paragraph error."""
    parser = parser or cli_parser()
    for line in lines:
        start = next((i for i, a in enumerate(line) if a in ("fit", "validate", "test", "predict")), None)
        if start is None:
            raise ConfigError(f"sweep command {' '.join(line)!r} has no subcommand (fit, validate, test or predict).")
        parser.parse_args(line[start:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightning sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a W&B sweep YAML (cluster/sweeps/*.yaml)")
    p.add_argument("--count", type=int, default=None, help="the first N grid points / N random draws")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws (method: random)")
    p.add_argument("--check", action="store_true", help="parse every trial with the CLI instead of printing")
    a = p.parse_args(argv)
    try:
        lines = trials(load(a.file), a.count, a.seed)
        if a.check:
            check(lines)
            print(f"{len(lines)} trials of {a.file} parse with the CLI", file=sys.stderr)
            return 0
    except ConfigError as e:
        print(f"\nsplitlab error: {e}", file=sys.stderr)
        return 2
    for line in lines:
        print(shlex.join(line))
    return 0
