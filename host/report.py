"""``host report``: load a results folder, tabulate it, write CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

from host.results import flatten


def write_tables(cells: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.parquet`` (one row per cell, columns of
    :func:`host.results.flatten`) into ``out_dir``; returns both paths.

    Raises:
        OSError: ``out_dir`` cannot be written.
    """
    import pandas as pd

    frame = pd.DataFrame([flatten(c) for c in cells])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = out_dir / "results.csv", out_dir / "results.parquet"
    for path, write in ((csv_path, lambda p: frame.to_csv(p, index=False)),
                        (parquet_path, lambda p: frame.to_parquet(p, index=False))):
        tmp = path.with_name(f".tmp-{path.name}")
        write(tmp)
        tmp.replace(path)
    return csv_path, parquet_path
