"""Shell command lines for boards: quoting, inventory command words, ``key=value`` replies
and the work folder.

Every remote command is built by :func:`sh` from quoted arguments, so model, device and
campaign names never reach a board's shell unquoted.
"""

from __future__ import annotations

import shlex


def sh(*args) -> str:
    """One shell command line from arguments, each quoted with :func:`shlex.quote`."""
    return " ".join(shlex.quote(str(a)) for a in args)


def words(text: str | None) -> list[str]:
    """Split an inventory value holding a command line (``engine``, ``container_args``)."""
    return shlex.split(text or "")


def kv_lines(text: str) -> dict:
    """``key=value`` lines -> dict (first value wins); ``model=`` lines -> list ``models``."""
    out: dict = {"models": []}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "model":
            out["models"].append(value.strip())
        else:
            out.setdefault(key.strip(), value.strip())
    return out


def workdir_spec(device) -> str:
    """The inventory ``workdir`` (default ``edgegauge``) as the shell snippet of
    :func:`set_workdir` takes it: absolute, or relative to the login user's home ("" = home)."""
    wd = device.workdir or "edgegauge"
    if wd == "~":
        return ""
    return wd[2:] if wd.startswith("~/") else wd


def set_workdir(device) -> str:
    """Shell statements that set ``$W`` to the device's absolute work folder (not created)."""
    return (f"W={shlex.quote(workdir_spec(device))}; "
            'case "$W" in /*) ;; "") W="$HOME" ;; *) W="$HOME/$W" ;; esac; ')
