"""``host report``: load a results folder, tabulate it, write CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

from host.campaign.store import _get, flatten


def write_tables(cells: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.parquet`` (one row per cell, columns of
    :func:`host.campaign.store.flatten` and :func:`host.analysis.dataset.budget_columns`) into
    ``out_dir``; returns both paths.

    Raises:
        OSError: ``out_dir`` cannot be written.
    """
    import pandas as pd

    from host.analysis.dataset import budget_columns

    frame = pd.DataFrame([{**flatten(c), **budget_columns(c)} for c in cells])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = out_dir / "results.csv", out_dir / "results.parquet"
    for path, write in ((csv_path, lambda p: frame.to_csv(p, index=False)),
                        (parquet_path, lambda p: frame.to_parquet(p, index=False))):
        tmp = path.with_name(f".tmp-{path.name}")
        write(tmp)
        tmp.replace(path)
    return csv_path, parquet_path


def mode_conflicts(cells: list[dict]) -> list[str]:
    """Cells of the same device, model and configuration measured in different power
    modes (``manifest.device.power_mode_key``, from the power-state probe). Their rows stay
    apart in the tables (column ``power_mode_key``); this names them so nobody averages
    them by accident.

    Returns:
        One line per (device, model, config) with more than one known mode key.
    """
    seen: dict = {}
    for cell in cells:
        mode = _get(cell, "manifest", "device", "power_mode_key")
        if mode is not None:
            key = tuple(_get(cell, "cell", k) for k in ("device", "model_stem", "config"))
            seen.setdefault(key, {}).setdefault(mode, []).append(_get(cell, "cell", "campaign"))
    return [f"{device} / {model} / {config}: measured in {len(modes)} power modes: "
            + "; ".join(f"{mode!r} (campaign {', '.join(sorted(set(c or '?' for c in camps)))})"
                        for mode, camps in sorted(modes.items()))
            for (device, model, config), modes in sorted(seen.items(), key=lambda kv: tuple(map(str, kv[0])))
            if len(modes) > 1]
