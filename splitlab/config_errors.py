"""One paragraph instead of a page when the config does not parse.

jsonargparse reports an unknown key inside a ``class_path`` object as a nested "Union
subtypes" report under ~60 lines of usage. :func:`explain` reads that report back into the
full key path (``model.init_args.local_branch.init_args.z_l_dimm``), the class that rejected
the key and its closest accepted names. ``SPLITLAB_DEBUG=1`` (or ``--debug``) keeps
jsonargparse's own report for developers.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from typing import Any, NoReturn

from pytorch_lightning.cli import LightningArgumentParser

DEBUG_ENV = "SPLITLAB_DEBUG"
_UNKNOWN = [
    re.compile(r"Option '([^']+)' is not accepted"),
    re.compile(r"Key '([^']+)' is not expected"),
    re.compile(r"does not accept option '([^']+)'"),
    re.compile(r"unrecognized arguments: (--?\S+)"),
]
_PARSER_KEY = re.compile(r'Parser key "([^"]+)":')
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)':")
_STRUCTURAL = ("Does not validate against", "Subtypes:", "Errors:", "Given value", "- Expected a <class 'NoneType'>",
               "- Not a valid subclass", "Subclass types expect", "- a class path", "- a dict ")


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:
        return None


def accepted_names(cls: Any) -> list[str]:
    """Keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the class hierarchy."""
    names: list[str] = []
    for klass in getattr(cls, "__mro__", [cls]):
        init = klass.__dict__.get("__init__") if isinstance(klass, type) else klass
        if init is None or klass is object:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            break
        names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                  and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _ancestry(lines: list[str], leaf: int) -> list[tuple[str, str]]:
    """The ("key", name) / ("class", path) lines enclosing line ``leaf``, outermost first."""
    chain, indent = [], len(lines[leaf]) - len(lines[leaf].lstrip())
    for line in reversed(lines[:leaf]):
        here = len(line) - len(line.lstrip())
        if here >= indent:
            continue
        text = line.strip().lstrip("- ").strip()
        for kind, pattern in (("key", _PARSER_KEY), ("class", _CLASS_PATH)):
            m = pattern.match(text)
            if m:
                chain.append((kind, m.group(1)))
                indent = here
                break
    return chain[::-1]


def _dotted(chain: list[tuple[str, str]], key: str) -> tuple[str, str | None]:
    """Full key path and the class that owns ``key``."""
    parts, owner = [], None
    for kind, name in chain:
        if kind == "key":
            parts.append(name)
        else:
            owner = name
            if parts and parts[-1].endswith("callbacks"):
                parts[-1] += f"[{name.rsplit('.', 1)[-1]}]"
            parts.append("init_args")
    return ".".join(parts + [key]), owner


def _option_names(parser: Any) -> list[str]:
    names = []
    for p in [parser, *getattr(getattr(parser, "_subcommands_action", None), "_name_parser_map", {}).values()]:
        names += [a.dest for a in getattr(p, "_actions", []) if isinstance(getattr(a, "dest", None), str)]
    return sorted(set(names))


def explain(message: str, parser: Any = None) -> str:
    """One paragraph for a jsonargparse error ``message``."""
    lines = message.splitlines()
    debug = f"Set {DEBUG_ENV}=1 (or pass --debug) for jsonargparse's full report."
    for i, line in enumerate(lines):
        for pattern in _UNKNOWN:
            m = pattern.search(line)
            if not m:
                continue
            key = m.group(1).lstrip("-").split("=", 1)[0]
            chain = _ancestry(lines, i)
            if chain:
                path, owner = _dotted(chain, key)
                cls = _import(owner) if owner else None
                names = accepted_names(cls) if cls is not None else []
                who = f"{owner}" if owner else "this config"
                leaf, candidates = key, names
            elif key.startswith("trainer.") and key.count(".") == 1:  # a Trainer argument
                import pytorch_lightning as pl

                path, who, leaf = key, "pytorch_lightning.Trainer", key.split(".", 1)[1]
                names = candidates = accepted_names(pl.Trainer)
            else:  # a top-level key
                path, who, leaf = key, "the `lightning` command", key
                candidates = [n for n in _option_names(parser) if not n.endswith("help")]
                names = [n for n in candidates if "." not in n and n not in ("config", "print_config")]
            close = difflib.get_close_matches(leaf, candidates, n=3, cutoff=0.6)
            guess = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
            shown = ", ".join(names[:25]) + (", ..." if len(names) > 25 else "")
            accepts = f" {who.rsplit('.', 1)[-1]} accepts: {shown}." if names else ""
            return (
                f"`{path}` is not an option: {who} has no argument `{leaf}`.{guess}{accepts} Fix the key in the YAML "
                f"or on the command line; `lightning fit --config <your.yaml> --print_config` lists every accepted key "
                f"with its value. {debug}"
            )
    # any other parse error: the innermost line that says what is wrong, with its key path
    leaf_i = max((i for i, l in enumerate(lines) if l.strip() and not any(s in l for s in _STRUCTURAL)
                  and not _PARSER_KEY.search(l) and not _CLASS_PATH.search(l)),
                 key=lambda i: (len(lines[i]) - len(lines[i].lstrip()), -i), default=None)
    if leaf_i is None:
        return f"the command line or config does not parse: {message.strip()} {debug}"
    chain = _ancestry(lines, leaf_i)
    m = _PARSER_KEY.match(lines[0].strip().replace("error: ", ""))
    where, _ = _dotted(chain, "") if chain else ((m.group(1) if m else ""), None)
    where = where.rstrip(".")
    what = lines[leaf_i].strip().lstrip("- ")
    return f"the config does not parse at `{where}`: {what}. Fix that value in the YAML or on the command line. {debug}"


def debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


class SplitlabArgumentParser(LightningArgumentParser):
    """LightningCLI's parser with :func:`explain` in place of the usage page on an error."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_requested():  # jsonargparse's internal trials raise; keep them
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        sys.stderr.write(f"\nsplitlab error: {explain(message, parser)}\n")
        sys.exit(2)
