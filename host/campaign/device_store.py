"""The lab's memory of each device, shared by every results folder on this host: the reference
workload's records of each campaign and each ``host calibrate`` run (issue 27).

A results folder holds its own campaigns' history; a fresh folder holds none, yet the device is
the same machine. So every campaign also files here its reference records and a summary of each
of its cells (p50 and within-campaign interval: :func:`host.campaign.store.cell_observation`), and
the device's campaign effect and a cell's own history (:mod:`host.campaign.device_effect`) read
them beside the folder's own.

Where: ``$EDGEGAUGE_STATE_DIR`` if set, else ``$XDG_STATE_HOME/edgegauge``, else
``~/.local/state/edgegauge`` (the XDG Base Directory Specification's state home); one file per
device, ``devices/<device>.json``, keeping the last :data:`KEEP` campaigns. Writing is best
effort and atomic; two hosts writing at the same moment may lose one campaign's entry, never
the file. A file that is unreadable or not of this shape is read as empty and replaced on the
next write (it holds nothing but this history)."""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Campaigns kept per device (the oldest are dropped).
KEEP = 200
KIND = "edgegauge-device-history"


def state_dir() -> Path:
    """The folder of the lab's state on this host (module docstring)."""
    if os.environ.get("EDGEGAUGE_STATE_DIR"):
        return Path(os.environ["EDGEGAUGE_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgegauge"


def _path(device: str) -> Path:
    from host.campaign.store import safe_name

    return state_dir() / "devices" / f"{safe_name(device)}.json"


def campaign_key(results: Path, campaign_folder: str) -> str:
    """The key of a campaign, unique on this host: ``<folder name> @ <results root, resolved>``."""
    return f"{campaign_folder} @ {Path(results).resolve()}"


def _read(device: str) -> list:
    try:
        doc = json.loads(_path(device).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = doc.get("campaigns") if isinstance(doc, dict) and doc.get("kind") == KIND else None
    return [dict(e, records=_list(e.get("records")), cells=_list(e.get("cells")))
            for e in entries or [] if isinstance(e, dict) and isinstance(e.get("key"), str)
            and (isinstance(e.get("records"), list) or isinstance(e.get("cells"), list))]


def _list(value) -> list:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def reference_campaigns(device: str, exclude: str | None = None) -> dict:
    """``{campaign key: [reference record, ...]}`` of ``device`` on this host, without the
    campaign ``exclude``; empty when there is no readable history."""
    return {e["key"]: e["records"] for e in _read(device) if e["key"] != exclude and e["records"]}


def cell_campaigns(device: str, exclude: str | None = None) -> dict:
    """``{campaign key: [cell observation, ...]}`` of ``device`` on this host (each
    ``{"cell", "p50_ms", "ci95", "start_utc"}``, :func:`host.campaign.store.cell_observation`),
    without the campaign ``exclude``; observations not of that shape are passed over."""
    def good(o: dict) -> bool:
        ci = o.get("ci95")
        return (isinstance(o.get("cell"), str) and isinstance(o.get("p50_ms"), (int, float))
                and isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci))

    found = {e["key"]: [o for o in e["cells"] if good(o)] for e in _read(device) if e["key"] != exclude}
    return {k: v for k, v in found.items() if v}


def add(device: str, entries: dict, cells: dict | None = None) -> Path:
    """File ``entries`` (``{campaign key: [reference records]}``) and ``cells`` (``{campaign key:
    [cell observations]}``) for ``device``, replacing a key already there, keeping the last
    :data:`KEEP`. Raises OSError when the state folder is not writable."""
    from runners.fileio import write_json_atomic

    cells = cells or {}
    keys = set(entries) | set(cells)
    kept = [e for e in _read(device) if e["key"] not in keys]
    kept += [{"key": k, "records": list(entries.get(k) or []), "cells": list(cells.get(k) or [])}
             for k in sorted(keys) if entries.get(k) or cells.get(k)]
    path = _path(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"kind": KIND, "device": device, "campaigns": kept[-KEEP:]}, str(path))
    return path
