"""Read back what W&B wrote offline: the run's ``.wandb`` transaction log (LevelDB log format of protobuf
``Record`` messages), so tests can check metrics, summary, config and media without a server."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7  # ":W&B" + magic (2 bytes) + version (1 byte)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, pending, position = [], b"", HEADER
    while position + 7 <= len(data):
        room = BLOCK - position % BLOCK
        if room < 7:  # a block's tail too small for a header is padding
            position += room
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        payload = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            pending += payload
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        out.append(record)
    return out


def read_run(run_dir: Path) -> dict[str, Any]:
    """{'run': {id, group, job_type, tags, name}, 'history': [ {key: value} ], 'summary': {…}, 'config': {…},
    'files': [paths under files/]} of one offline run directory."""
    (log,) = run_dir.glob("run-*.wandb")
    result: dict[str, Any] = {"run": {}, "history": [], "summary": {}, "config": {}}
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            result["run"] = {
                "id": r.run_id,
                "group": r.run_group,
                "job_type": r.job_type,
                "tags": list(r.tags),
                "name": r.display_name,
            }
            for item in r.config.update:
                result["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            result["history"].append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "summary":
            for item in record.summary.update:
                result["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                result["config"][item.key] = json.loads(item.value_json)
    result["files"] = sorted(
        str(p.relative_to(run_dir / "files")) for p in (run_dir / "files").rglob("*") if p.is_file()
    )
    return result
