"""Read the records of a W&B run file (``<run folder>/wandb/offline-run-*/run-<id>.wandb``) without a server.

The file is W&B's append-only log (LevelDB's log format: 32 KiB blocks of checksummed chunks, each
record a ``wandb_internal_pb2.Record``). Used by the tests and by anyone who wants to check an
offline run before ``wandb sync``: which run id it is and which steps it logged.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def raw_records(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (no ':W&B' header)")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        pos += _HEADER
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
            continue
        chunk, pos = data[pos:pos + length], pos + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def read_run_file(path: str) -> dict[str, Any]:
    """``{"run_id", "history": [row, ...]}``: each history row a dict of the logged values (JSON-decoded)."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    run_id, history = None, []
    for raw in raw_records(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run_id = rec.run.run_id
        elif kind in ("history", "request") and (kind == "history" or rec.request.WhichOneof("request_type") == "partial_history"):
            items = rec.history.item if kind == "history" else rec.request.partial_history.item
            row = {}
            for item in items:
                key = item.key or "/".join(item.nested_key)
                try:
                    row[key] = json.loads(item.value_json)
                except ValueError:
                    row[key] = item.value_json
            history.append(row)
    return {"run_id": run_id, "history": history}
