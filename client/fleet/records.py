"""Fleet ids (`f-3c9a`) and what each names: a small file per fleet in the config dir, so
`lager python --continue f-3c9a` from another terminal knows the boxes without `--box`."""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from lager.errors import UsageError

from ..config import Box, Config

KEEP = 200  # the newest fleets kept; an old id then says it is unknown


def _dir(config: Config) -> Path:
    return config.root / "fleets"


def new_fleet_id(config: Config) -> str:
    for _ in range(64):
        fleet_id = "f-" + secrets.token_hex(2)
        if not (_dir(config) / f"{fleet_id}.json").exists():
            return fleet_id
    return "f-" + secrets.token_hex(4)


def save(config: Config, fleet_id: str, expression: str, boxes: list[Box]) -> None:
    where = _dir(config)
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = {"id": fleet_id, "target": expression, "started_at": time.time(),
              "boxes": [b.to_dict() for b in boxes]}
    tmp = where / f".{fleet_id}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(where / f"{fleet_id}.json")
    old = sorted(where.glob("f-*.json"), key=lambda p: p.stat().st_mtime)[:-KEEP]
    for path in old:
        path.unlink(missing_ok=True)


def load(config: Config, fleet_id: str) -> tuple[str, list[Box]]:
    path = _dir(config) / f"{fleet_id}.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text())
        return str(record["target"]), [Box.from_dict(b) for b in record["boxes"]]
    except FileNotFoundError:
        raise UsageError(f"unknown fleet {fleet_id} on this laptop; give the boxes too: "
                         f"--continue {fleet_id} --box SET") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is damaged ({exc})") from None
