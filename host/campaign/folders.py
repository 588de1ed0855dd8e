"""The campaign's folders on this host: making and probing them before anything is measured, the
limits of a cell's file names, reading a stored cell, moving an unusable one aside (never deleting
it), the campaign lock (``<campaign>/.lock``), the temp files a killed run left, and names that
would share a folder."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from host.campaign.samples import SUFFIX as SAMPLES_SUFFIX
from host.campaign.store import parse_cell, safe_name
from host.errors import CampaignBusyError, NameCollisionError, ResultsLocationError

LOCATION_HINT = "pass a writable folder with --results (default ./results), or free the path named"


def refuse_files_as_folders(folders: list) -> None:
    """Raises ResultsLocationError when a file (not a folder) stands at one of ``folders``."""
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise ResultsLocationError(f"{folder} is a file, not a folder: no results can be stored there",
                                       path=folder, hint=LOCATION_HINT)


def prepare_folders(results: Path, camp_dir: Path, device_dirs: list) -> None:
    """Make the results, campaign and device folders and check each new file can be made in the
    campaign and device folders (a ``.tmp-*`` probe made and removed), before anything is measured.

    Raises:
        ResultsLocationError: a file stands where a folder belongs, or a folder cannot be made or
            written (read-only file system, no permission, full).
    """
    refuse_files_as_folders([results, camp_dir, *device_dirs])
    for folder in (results, camp_dir, *device_dirs):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsLocationError(f"cannot make the results folder {folder}: {exc.strerror or exc}",
                                       path=folder, hint=LOCATION_HINT) from None
    for folder in (camp_dir, *device_dirs):
        try:
            fd, probe = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ResultsLocationError(f"cannot write in the results folder {folder}: {exc.strerror or exc}",
                                       path=folder, hint=LOCATION_HINT) from None


#: The longest name made from a cell's file name: ``<cell>.json.corrupt-<UTC time>-<n>``.
_LONGEST_EXTRA = len(".corrupt-20261207T000000Z-99")


def check_cell_path(path: Path) -> None:
    """Check that ``path`` and every name made from it (sidecars, a moved-aside copy) fit the limits
    of the file system holding its folder (NAME_MAX, PATH_MAX).

    Raises:
        ResultsLocationError: a name or the path would be too long.
    """
    limits = {}
    for key, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits[key] = os.pathconf(path.parent, key)
        except (OSError, ValueError):
            limits[key] = default
    name = len(os.fsencode(path.name)) + _LONGEST_EXTRA
    full = len(os.fsencode(str(path.absolute()))) + _LONGEST_EXTRA
    if name > limits["PC_NAME_MAX"] or full >= limits["PC_PATH_MAX"]:
        raise ResultsLocationError(
            f"{path}: too long for its file system ({name} bytes of file name of at most "
            f"{limits['PC_NAME_MAX']}, {full} bytes of path of fewer than {limits['PC_PATH_MAX']})",
            path=path, hint="pass a shorter --results folder or --campaign name")


def stored_cell(path: Path) -> tuple:
    """The cell stored at ``path``: (document, None); (None, None) when there is none; (None, why)
    when it is not valid JSON or fails the cell schema (:func:`host.campaign.schema.validate_cell`).

    Raises:
        ResultsLocationError: it exists but cannot be read (no permission, not a file).
    """
    from host.errors import CellSchemaError

    if not path.exists() and not path.is_symlink():
        return None, None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsLocationError(f"cannot read the stored cell {path}: {exc.strerror or exc}", path=path,
                                   hint="make it readable, or move it aside to measure it again") from None
    try:
        return parse_cell(raw, path), None
    except CellSchemaError as exc:
        return None, str(exc)


def _cell_files(path: Path) -> list:
    """A cell's file and its sidecars that exist (samples, power samples, layer profile)."""
    base = str(path)[: -len(".json")]
    found = [Path(base + s) for s in (SAMPLES_SUFFIX, ".power.csv", ".profile.json")]
    return [path, *(p for p in found if p.exists() or p.is_symlink())]


def move_aside(path: Path, stamp: str) -> Path:
    """Rename ``path`` to ``<name>.corrupt-<stamp>`` (``-2``, ``-3``… when taken); never deletes.
    Returns the new path. Raises OSError."""
    target, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, target)
    return target


def move_aside_unusable(work: dict, camp_dir: Path) -> list:
    """Move every stored cell that failed to load (``_Item.problem``), and its sidecars, aside
    (:func:`move_aside`); each becomes a note of its board. Returns the log entries
    ``[{"file", "moved_to", "problem"}]`` (paths relative to the campaign folder).

    Raises:
        ResultsLocationError: a file could not be moved.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log = []
    for w in work.values():
        for item in (i for i in w.items if i.problem):
            for path in _cell_files(item.path):
                try:
                    target = move_aside(path, stamp)
                except OSError as exc:
                    raise ResultsLocationError(f"cannot move the unusable cell {path} aside: "
                                               f"{exc.strerror or exc}", path=path,
                                               hint=LOCATION_HINT) from None
                log.append({"file": str(path.relative_to(camp_dir)), "moved_to": target.name,
                            "problem": item.problem})
                w.notes.append(f"{path.name} moved aside to {target.name}"
                               + (f" ({item.problem}); measuring it again" if path == item.path else ""))
    return log



@contextlib.contextmanager
def campaign_lock(camp_dir: Path, campaign: str):
    """Hold ``<campaign>/.lock`` (``flock``) while a run writes the campaign: a second run of
    the same campaign on this host is refused instead of writing duplicates.

    Raises:
        CampaignBusyError: another process holds it (its pid in the message).
    """
    fd = os.open(camp_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            raise CampaignBusyError(
                f"campaign {campaign!r} is being run by another process (pid {holder}) in {camp_dir}",
                hint="wait for it to end, or bench in another campaign (omit --campaign)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def remove_partials(camp_dir: Path) -> list:
    """Remove the temp files (``.tmp-*``, :func:`runners.fileio.write_atomic`) a killed run left in
    the campaign folder: only whole files ever become cells. Returns their names."""
    found = sorted(camp_dir.rglob(".tmp-*"))
    for path in found:
        path.unlink(missing_ok=True)
    return [str(p.relative_to(camp_dir)) for p in found]



def refuse_collisions(camp_dir: Path, campaign: str, devices: list, held: str | None) -> None:
    """Refuse names that :func:`safe_name` would merge: two devices with one folder, or a
    campaign whose folder holds another campaign ``held`` (``a b`` and ``a_b``).

    Raises:
        NameCollisionError: with both names.
    """
    seen: dict = {}
    for device in devices:
        other = seen.setdefault(safe_name(device.name), device.name)
        if other != device.name:
            raise NameCollisionError(
                f"devices {other!r} and {device.name!r} would share the results folder {safe_name(other)!r}",
                hint="rename one of them in the inventory")
    if held is not None and held != campaign:
        raise NameCollisionError(
            f"campaign {campaign!r} would write into {camp_dir}, which holds campaign {held!r}",
            hint=f"use --campaign {held!r} to resume that one, or another name")


