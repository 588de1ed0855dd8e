"""What a board is and whether it can run cells, changing nothing on it: ``host check``'s
facts and readiness, the runner's runtime check, and the power-state probe.

The functions take a :class:`host.lab.board.Board`; the board's methods of the same names
call them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from host.errors import TransportError
from host.lab.benchconfig import tail
from host.lab.shell import kv_lines, set_workdir, sh, words

#: The power-state probe's schema (runners/power_state.py).
POWER_STATE_SCHEMA = "edgegauge.power_state/1"


@dataclass
class CheckReport:
    """``host check`` on one board: verdict ``ready`` | ``not ready`` | ``unreachable`` |
    ``placeholder`` (its address is a documentation one: :func:`placeholder_report`)."""

    device: str
    verdict: str
    facts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"device": self.device, "verdict": self.verdict, "facts": self.facts,
                "problems": self.problems, "notes": self.notes}


#: Documentation addresses (RFC 5737 TEST-NET-1/2/3, RFC 3849) and reserved example names
#: (RFC 2606, RFC 6761): an inventory that still holds one was copied from the example.
PLACEHOLDER_NETWORKS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
PLACEHOLDER_NAMES = ("example.com", "example.net", "example.org")
PLACEHOLDER_SUFFIXES = (".example", ".invalid")


def placeholder_address(host: str) -> str | None:
    """Why ``host`` is a placeholder (a documentation network or a reserved example name), or
    None when it may be a real board."""
    import ipaddress

    name = host.strip().lower().rstrip(".")
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        if name in PLACEHOLDER_NAMES or name.endswith(tuple("." + n for n in PLACEHOLDER_NAMES)):
            return f"{host} is a reserved example name (RFC 2606)"
        if name.endswith(PLACEHOLDER_SUFFIXES) or name in ("example", "invalid"):
            return f"{host} is under a reserved top-level name (RFC 2606)"
        return None
    for net in PLACEHOLDER_NETWORKS:
        if address in ipaddress.ip_network(net):
            return f"{host} is a documentation address ({net}, RFC {'3849' if ':' in net else '5737'})"
    return None


def placeholder_report(device) -> CheckReport | None:
    """``host check``'s report for a device whose address is a placeholder
    (:func:`placeholder_address`): verdict ``placeholder``, nothing connected; None otherwise."""
    if device.connection == "local":
        return None
    why = placeholder_address(device.host)
    if why is None:
        return None
    return CheckReport(device.name, "placeholder", problems=[
        f"{why}: not a board; put the board's address in {device.source or 'the inventory'} "
        "(ansible_host=)"])


def runtime_module(runtime: str) -> str:
    """The Python module that must import on a board whose inventory ``runtime`` (a backend
    name) is ``runtime``: its descriptor's first runtime module, else numpy (the runner's own)."""
    from runners.backends import descriptors

    desc = descriptors().get(runtime)
    return desc.runtime_modules[0] if desc and desc.runtime_modules else "numpy"


def runtime_check(board) -> tuple[bool, str]:
    """Does the board's runner (native interpreter or image) import the runtime?

    Returns:
        (ok, detail) — detail is the runner's ``backends`` line or the error.

    Raises:
        TransportError: connection problems.
    """
    backend = board.device.runtime
    res = board.transport.run(board.command(["backends"]), timeout=300, retry=True)
    if not res.ok:
        return False, f"runner did not start (exit {res.exit_code}): {tail(res.stderr, 300).strip()}"
    lines = dict(line.split("\t", 1) for line in res.stdout.splitlines() if "\t" in line)
    lines = {k: v for k, v in lines.items() if not v.startswith("not implemented")}
    if backend not in lines:
        return False, (f"runtime {board.device.runtime!r}: no runner backend for it in this version "
                       f"of edgegauge (backends: {', '.join(sorted(lines))})")
    status = lines[backend]
    return status.startswith("available"), f"{backend}: {status}"


def facts(board) -> dict:
    """Facts for ``host check`` from one round trip: arch, cores, memory, kernel, OS,
    Python, docker/podman, power mode (nvpmodel, cpufreq governor) when known.

    Raises:
        TransportError: connection problems.
    """
    py = sh(board._python())
    script = "; ".join([
        'echo "arch=$(uname -m)"', 'echo "kernel=$(uname -r)"',
        'echo "cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null)"',
        "awk '/^MemTotal:/ {print \"mem_kib=\" $2}' /proc/meminfo",
        '( . /etc/os-release 2>/dev/null && echo "os=$PRETTY_NAME" )',
        f'echo "python=$({py} -c "import sys; print(sys.version.split()[0])" 2>/dev/null)"',
        'echo "docker=$(docker --version 2>/dev/null)"',
        'echo "podman=$(podman --version 2>/dev/null)"',
        'echo "l4t=$(head -n 1 /etc/nv_tegra_release 2>/dev/null)"',
        'echo "nvpmodel=$(nvpmodel -q 2>/dev/null | head -n 1)"',
        'echo "governor=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null)"',
        "exit 0",
    ])
    res = board.transport.run(script, timeout=60, retry=True)
    found = {k: v for k, v in kv_lines(res.stdout).items() if v and k != "models"}
    if "mem_kib" in found:
        found["mem_gib"] = round(int(found.pop("mem_kib")) / 2**20, 1)
    return found


#: /proc/cpuinfo's first value of each field -> its fact name (ARM and x86 spell them differently)
_CPUINFO = {"model name": "cpu_model", "flags": "cpu_flags", "Features": "cpu_features",
            "CPU implementer": "cpu_implementer", "CPU part": "cpu_part"}


def cpu_facts(board) -> dict:
    """The CPU's identification, one round trip: /proc/cpuinfo's first ``model name``, ``flags``
    (x86) or ``Features``, ``CPU implementer``, ``CPU part`` (ARM) as ``cpu_model``, ``cpu_flags``,
    ``cpu_features``, ``cpu_implementer``, ``cpu_part``, and the device tree's ``model`` (a Raspberry
    Pi's name); what the board does not give is absent. What a compiler needs for a board's target
    (``host zoo compile --device``), not part of ``host check``'s :func:`facts`.

    Raises:
        TransportError: connection problems.
    """
    fields = " ".join(f'k=="{k}"&&!s["{k}"]{{print "{v}=" v; s["{k}"]=1}}' for k, v in _CPUINFO.items())
    script = ("awk '{k=$0; sub(/[ \t]*:.*/, \"\", k); v=$0; sub(/^[^:]*:[ \t]*/, \"\", v)} "
              + fields + "' /proc/cpuinfo 2>/dev/null; "
              "printf 'board_model=%s\\n' \"$(tr -d '\\000' < /proc/device-tree/model 2>/dev/null)\"; exit 0")
    res = board.transport.run(script, timeout=60, retry=True)
    found = {k: v for k, v in kv_lines(res.stdout).items() if v and k != "models"}
    if "board_model" in found:  # kv_lines gathers "model=" lines as the work folder's models
        found["model"] = found.pop("board_model")
    return found


def check(board) -> CheckReport:
    """Facts plus readiness, changing nothing on the board: the work folder is (or can
    be) writable; native mode: the interpreter imports the runtime module; container
    mode: the engine exists, the image is present and imports the runtime. Never
    raises: an unreachable board or a refused host key gives verdict ``unreachable``."""
    report = CheckReport(board.name, "ready")
    try:
        report.facts = board.facts()
        report.problems = readiness(board, report.facts)
    except TransportError as exc:
        report.verdict = "unreachable"
        report.problems = [str(exc)]
    else:
        if report.problems:
            report.verdict = "not ready"
    report.notes = list(board.transport.stats.notes)
    return report


def readiness(board, found: dict) -> list[str]:
    """Problems that keep the board from running cells (empty: ready); adds ``runtime``
    (module and version) to ``found`` when the runtime imports.

    Raises:
        TransportError: connection problems.
    """
    from runners.backends import implemented_names

    device = board.device
    module = runtime_module(device.runtime)
    problems = []
    if device.runtime not in implemented_names():
        problems.append(f"runtime {device.runtime!r} has no runner backend in this version")
    res = board.transport.run(_readiness_script(board, module), timeout=300, retry=True)
    got = kv_lines(res.stdout)
    if got.get("workdir") != "ok":
        problems.append(f"work folder {device.workdir}: {got.get('workdir', 'unknown')}")
    if got.get("engine") == "missing":
        problems.append(f"container engine {words(device.engine or 'docker')[0]!r} not found")
    elif got.get("image") == "missing":
        problems.append(f"image {device.image} not on the board (run `host deploy`)")
    runtime = got.get("runtime", "")
    if runtime.startswith("edgegauge-ok "):
        found["runtime"] = f"{module} {runtime.split(' ', 1)[1]}"
    elif "runtime" in got:
        problems.append(f"{module} does not import: {runtime or 'no output'}")
    return problems


def _readiness_script(board, module: str) -> str:
    """One round trip: is the work folder writable, and does ``module`` import (natively, or
    in the image when the engine and the image are there)? Replies ``key=value`` lines."""
    device = board.device
    probe = (f"import importlib; m = importlib.import_module({module!r}); "
             "print('edgegauge-ok', getattr(m, '__version__', 'unknown'))")
    script = (
        set_workdir(device)
        + 'D="$W"; while [ ! -e "$D" ]; do D=$(dirname "$D"); done; '
        '[ -w "$D" ] && echo workdir=ok || echo "workdir=not writable: $D"; '
    )
    if board.container:
        engine = words(device.engine or "docker")
        in_image = sh(*engine, "run", "--rm", *words(device.container_args), device.image,
                      "python3", "-c", probe)
        return script + (
            f"if ! command -v {sh(engine[0])} >/dev/null 2>&1; then echo engine=missing; "
            f"elif ! {sh(*engine, 'image', 'inspect', device.image)} >/dev/null 2>&1; then "
            "echo image=missing; else "
            f'echo "runtime=$({in_image} 2>&1 | tail -n 1)"; '
            "fi; exit 0"
        )
    return script + (f'echo "runtime=$({sh(board._python(), "-c", probe)} 2>&1 | tail -n 1)"; '
                      "exit 0")


def power_state(board) -> dict:
    """The board's power mode, governors and clocks now: ``python3 -m
    runners.power_state`` from the shipped runners, run natively by the board's
    ``python3`` (stdlib only; in container mode too: power modes belong to the board, not
    to a container) — the same probe that
    ``power_mode.yml`` reports with ``show``. From the inventory: ``edgegauge_root``
    prefixes the sysfs/etc paths (``/`` on real boards), ``edgegauge_family`` skips
    detection, ``edgegauge_state_dir`` holds what ``tune`` stored.

    Returns:
        The probe's ``edgegauge.power_state/1`` object; when the probe cannot run,
        ``{"schema": ..., "mode_key": None, "errors": [why]}``.

    Raises:
        TransportError: the board is unreachable.
    """
    args = ["--root", str(board.device.vars.get("edgegauge_root") or "/")]
    for var, option in (("edgegauge_family", "--family"), ("edgegauge_state_dir", "--state-dir")):
        value = board.device.vars.get(var)
        if value and "{{" not in str(value):  # a Jinja expression is Ansible's to expand
            args += [option, str(value)]
    probe = sh("python3", "-m", "runners.power_state", *args)
    cmd = f"PYTHONPATH={sh(board.runners_path)} {probe}"
    res = board.transport.run(cmd, timeout=30, retry=True)
    if res.ok:
        try:
            state = json.loads(res.stdout)
            if isinstance(state, dict):
                return state
        except ValueError:
            pass
    why = tail(res.stderr, 300).strip() or f"exit {res.exit_code}, no JSON on stdout"
    return {"schema": POWER_STATE_SCHEMA, "mode_key": None,
            "errors": [f"power state probe failed: {why}"]}
