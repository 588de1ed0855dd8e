"""One device as the host drives it: its work folder, the shipped runners, content-addressed
models, the container image, facts, and one benchmark cell.

Work folder layout on the board (``workdir`` from the inventory; relative = under the
login user's home)::

    <workdir>/runners/<hash>/runners/*.py   the runner package, versioned by content hash
    <workdir>/models/<sha256>.onnx          models, content-addressed (sent once)
    <workdir>/out/<token>.json              a cell's result, read back and removed

Every remote command is built by :func:`sh` from quoted arguments: model names, device
names and campaign names never reach the board (models travel as ``<sha256>.onnx``), and
inventory values (work folder, interpreter, image, engine options) are quoted word by word.
The same class drives ``--device local`` through :class:`host.lab.transport.LocalTransport`.
"""

from __future__ import annotations

import functools
import io
import json
import posixpath
import shlex
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import DeployError, TransportError
from host.lab.runner import RESULT_EXIT_CODES, BenchConfig, RunnerOutcome, tail
from host.lab.transport import SIGNAL_BASE, LocalTransport, SshTransport
from runners.manifest import read_sources, source_sha256
from runners.util import file_sha256

#: Where the work folder is mounted inside a container.
CONTAINER_WORKDIR = "/edgegauge"
#: The power-state probe's schema (runners/power_state.py).
POWER_STATE_SCHEMA = "edgegauge.power_state/1"
TOKEN_PREFIX = "edgegauge-cell-"


def runtime_module(runtime: str) -> str:
    """The Python module that must import on a board whose inventory ``runtime`` (a backend
    name) is ``runtime``: its descriptor's first runtime module, else numpy (the runner's own)."""
    from runners.backends import descriptors

    desc = descriptors().get(runtime)
    return desc.runtime_modules[0] if desc and desc.runtime_modules else "numpy"


def sh(*args) -> str:
    """One shell command line from arguments, each quoted with :func:`shlex.quote`."""
    return " ".join(shlex.quote(str(a)) for a in args)


def words(text: str | None) -> list[str]:
    """Split an inventory value holding a command line (``engine``, ``container_args``)."""
    return shlex.split(text or "")


@functools.lru_cache(maxsize=None)
def runners_bundle() -> tuple[str, bytes]:
    """The ``runners`` package as a deterministic ``.tar.gz`` and its content hash.

    Only ``*.py`` files are packed (:func:`runners.manifest.read_sources`), sorted, with
    zeroed owners and times, so the hash changes exactly when the runner code changes.

    Returns:
        (:func:`runners.manifest.source_sha256` of those files -- the ``source_sha256`` a
        result of this bundle reports --, archive bytes).
    """
    sources = read_sources()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in sources:
            info = tarfile.TarInfo("runners/" + rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return source_sha256(sources), buf.getvalue()


_SHA_CACHE: dict = {}
_SHA_LOCK = threading.Lock()


def cached_sha256(path: Path) -> str:
    """:func:`runners.util.file_sha256` of a file, cached by (path, size, mtime): a campaign
    hashes each model once, however many boards and cells use it.

    Raises:
        OSError: the file cannot be read.
    """
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    digest = file_sha256(path)
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest
    return digest


def _kv(text: str) -> dict:
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


@dataclass
class BoardOptions:
    """How to reach boards: SSH settings shared by every device of one command."""

    known_hosts: Path | None = None  # overrides the inventory's UserKnownHostsFile
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5


def open_transport(device, options: BoardOptions | None = None):
    """The transport for an inventory device: local for ``connection=local``, else SSH."""
    options = options or BoardOptions()
    if device.connection == "local":
        return LocalTransport(device.name)
    known = options.known_hosts or (Path(device.known_hosts) if device.known_hosts else None)
    return SshTransport(device.name, device.host, device.port, device.user, key_file=device.key_file,
                        known_hosts=known, accept_new_host_keys=options.accept_new_host_keys,
                        connect_timeout=options.connect_timeout, retries=options.retries,
                        backoff_s=options.backoff_s)


@dataclass
class StepReport:
    """What :meth:`Board.deploy` did on one board."""

    device: str
    ok: bool = True
    steps: list = field(default_factory=list)  # [(step, detail)]
    error: str | None = None
    category: str | None = None
    bytes_sent: int = 0
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"device": self.device, "ok": self.ok, "steps": [list(s) for s in self.steps],
                "error": self.error, "category": self.category, "bytes_sent": self.bytes_sent,
                "notes": self.notes}


@dataclass
class CheckReport:
    """``host check`` on one board: verdict ``ready`` | ``not ready`` | ``unreachable``."""

    device: str
    verdict: str
    facts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"device": self.device, "verdict": self.verdict, "facts": self.facts,
                "problems": self.problems, "notes": self.notes}


class Board:
    """Drives one device through a transport. One thread uses one board at a time."""

    def __init__(self, device, transport):
        self.device = device
        self.transport = transport
        self.workdir: str | None = None
        self.models_present: set = set()
        self.runners_hash, _ = runners_bundle()
        self.runners_present = False
        self.runners_shipped = False
        self.models_sent = 0
        self.model_bytes_sent = 0
        self.down: str | None = None  # set once the board was found unreachable

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def container(self) -> bool:
        return self.device.mode == "container"

    # -- work folder, runners, models ---------------------------------------------------

    def _workdir_spec(self) -> str:
        wd = self.device.workdir or "edgegauge"
        if wd == "~":
            return ""
        return wd[2:] if wd.startswith("~/") else wd

    def prepare(self) -> None:
        """Create the work folder, learn which runners/models are already there (one
        round trip), and ship the runner package when its version is missing.

        Raises:
            TransportError: the board cannot be reached.
            DeployError: the work folder cannot be created or written.
        """
        script = (
            f"W={shlex.quote(self._workdir_spec())}; "
            'case "$W" in /*) ;; "") W="$HOME" ;; *) W="$HOME/$W" ;; esac; '
            'mkdir -p "$W/models" "$W/out" "$W/runners" && test -w "$W/out" || '
            '{ echo "cannot create or write the work folder $W" >&2; exit 3; }; '
            + (  # images run as their own non-root user: let it write its result (sticky, like /tmp)
                'chmod 1777 "$W/out" || exit 3; ' if self.container else "")
            +
            'printf "workdir=%s\\n" "$W"; '
            f'test -f "$W/runners/{self.runners_hash}/.complete" && echo runners=present; '
            'for f in "$W"/models/*.onnx; do [ -f "$f" ] && printf "model=%s\\n" "${f##*/}"; done; '
            "exit 0"
        )
        res = self.transport.run(script, timeout=60, retry=True)
        if not res.ok:
            raise DeployError(f"{self.name}: {res.stderr.strip() or 'preparing the work folder failed'}",
                              hint="set a writable `workdir` for this device in the inventory")
        facts = _kv(res.stdout)
        self.workdir = posixpath.normpath(facts["workdir"])
        self.runners_present = facts.get("runners") == "present"
        self.models_present = {m[:-5] for m in facts["models"]}
        if not self.runners_present:
            self._ship_runners()

    def _ship_runners(self) -> None:
        digest, data = runners_bundle()
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as tmp:
            tmp.write(data)
            tmp.flush()
            archive = f"{self.workdir}/runners/{digest}.tar.gz"
            self.transport.put(Path(tmp.name), archive)
        rdir = f"{self.workdir}/runners"
        staging = f"{rdir}/.{digest}.tmp"
        final = f"{rdir}/{digest}"
        cmd = (f"rm -rf {sh(staging)} && mkdir -p {sh(staging)} && tar -xzf {sh(archive)} -C {sh(staging)}"
               f" && touch {sh(staging + '/.complete')} && rm -rf {sh(final)} && mv {sh(staging)} {sh(final)}"
               f"; rc=$?; rm -f {sh(archive)}; exit $rc")
        res = self.transport.run(cmd, timeout=120, retry=True)
        if not res.ok:
            raise DeployError(f"{self.name}: unpacking the runners failed: {res.stderr.strip()}",
                              hint="the board needs `tar` and a writable work folder")
        self.runners_present = True
        self.runners_shipped = True

    @property
    def runners_path(self) -> str:
        return f"{self.workdir}/runners/{self.runners_hash}"

    def ensure_model(self, model: Path, sha256: str | None = None) -> str:
        """Make sure ``model`` is on the board as ``models/<sha256>.onnx``; returns that
        path. Sent only when absent (content-addressed: the name is the content hash).

        Raises:
            TransportError: connection problems. OSError: the model cannot be read.
        """
        sha = sha256 or cached_sha256(model)
        remote = f"{self.workdir}/models/{sha}.onnx"
        if sha not in self.models_present:
            self.model_bytes_sent += self.transport.put(Path(model), remote)
            self.models_sent += 1
            self.models_present.add(sha)
        return remote

    # -- running ------------------------------------------------------------------------

    def _python(self) -> str:
        return self.device.python or "python3"

    def command(self, runner_argv: list[str], *, name: str | None = None) -> str:
        """The shell command that runs ``python -m runners ARGV`` on this board, natively
        or in a container (``ENGINE run --rm`` with the work folder mounted), ending in
        ``; exit $?`` so a signal shows as ``128 + N``. Paths in ``runner_argv`` are board
        paths under the work folder; in container mode they are rewritten to the mount.
        """
        if not self.container:
            return (f"cd {sh(self.workdir)} && PYTHONPATH={sh(self.runners_path)} "
                    f"{sh(self._python(), '-m', 'runners', *runner_argv)}; exit $?")
        inside = [a.replace(self.workdir, CONTAINER_WORKDIR, 1) if a.startswith(self.workdir + "/") else a
                  for a in runner_argv]
        engine = words(self.device.engine or "docker")
        argv = [*engine, "run", "--rm"]
        if name:
            argv += ["--name", name]
        argv += [*words(self.device.container_args),
                 "-v", f"{self.workdir}:{CONTAINER_WORKDIR}", "-w", CONTAINER_WORKDIR,
                 "-e", f"PYTHONPATH={CONTAINER_WORKDIR}/runners/{self.runners_hash}",
                 self.device.image, "python3", "-m", "runners", *inside]
        return f"{sh(*argv)}; exit $?"

    def run_cell(self, model: Path, sha256: str, config: BenchConfig) -> RunnerOutcome:
        """Run one cell: stage the model, run the runner in a fresh process (native or
        container), read the result JSON back. Runner failures are in the outcome.

        Raises:
            TransportError: the board is unreachable or the connection dropped.
        """
        t0 = time.monotonic()
        bytes_before = self.transport.stats.bytes_sent
        remote_model = self.ensure_model(model, sha256)
        token = TOKEN_PREFIX + uuid.uuid4().hex
        out = f"{self.workdir}/out/{token}.json"
        argv = ["run", remote_model, "--out", out, *config.runner_args()]
        command = self.command(argv, name=token)
        extra_kill = sh(*words(self.device.engine or "docker"), "rm", "-f", token) + " >/dev/null 2>&1" \
            if self.container else None
        t1 = time.monotonic()
        # on timeout or abort the transport kills the runner's whole session, then removes
        # the container (which lives outside the session)
        res = self.transport.run(command, timeout=config.timeout_s, kill_pattern=token, on_kill=extra_kill)
        t2 = time.monotonic()
        code, sig = res.exit_code, None
        if code is not None and code > SIGNAL_BASE and (code - SIGNAL_BASE) < 65:
            import signal as _signal

            try:
                sig = _signal.Signals(code - SIGNAL_BASE).name
            except ValueError:
                sig = f"signal {code - SIGNAL_BASE}"
            code = None
        outcome = RunnerOutcome(argv=[command], exit_code=code, signal=sig, wall_s=res.wall_s,
                                timed_out=res.timed_out, stderr_tail=tail(res.stderr))
        if code in RESULT_EXIT_CODES:
            try:
                outcome.result = json.loads(self.transport.read(out).decode("utf-8"))
            except (OSError, ValueError) as exc:
                outcome.result_error = f"unreadable result JSON: {exc}"
        self.transport.remove(out)
        t3 = time.monotonic()
        outcome.extra = {
            "board": self.name,
            "transport": self.transport.kind,
            "mode": self.device.mode,
            "model_remote_path": remote_model,
            "model_bytes_sent": self.transport.stats.bytes_sent - bytes_before,
            "stage_s": round(t1 - t0, 6),
            "runner_command_s": round(t2 - t1, 6),
            "fetch_s": round(t3 - t2, 6),
            "cell_wall_s": round(t3 - t0, 6),
        }
        return outcome

    def clock_probes(self, n: int = 7) -> list:
        """Bracketed reads of the board's CLOCK_MONOTONIC (the runner's loop clock):
        ``[(t1_host_ns, board_ns, t2_host_ns), ...]``. Uses the native interpreter, or the
        board's own ``python3`` in container mode (containers share the host's monotonic
        clock).

        Raises:
            TransportError: the probe could not run.
        """
        python = "python3" if self.container else self._python()
        return self.transport.clock_probes(python, n)

    def power_state(self) -> dict:
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
        args = ["--root", str(self.device.vars.get("edgegauge_root") or "/")]
        for var, option in (("edgegauge_family", "--family"), ("edgegauge_state_dir", "--state-dir")):
            value = self.device.vars.get(var)
            if value and "{{" not in str(value):  # a Jinja expression is Ansible's to expand
                args += [option, str(value)]
        probe = sh("python3", "-m", "runners.power_state", *args)
        cmd = f"PYTHONPATH={sh(self.runners_path)} {probe}"
        res = self.transport.run(cmd, timeout=30, retry=True)
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

    def abort(self) -> None:
        """Stop this board (another thread calls this on Ctrl-C): the cell in flight has its
        runner's whole session killed (and its container removed); no new command starts."""
        self.transport.abort()

    # -- deploy and check ---------------------------------------------------------------

    def runtime_check(self) -> tuple[bool, str]:
        """Does the board's runner (native interpreter or image) import the runtime?

        Returns:
            (ok, detail) — detail is the runner's ``backends`` line or the error.

        Raises:
            TransportError: connection problems.
        """
        backend = self.device.runtime
        res = self.transport.run(self.command(["backends"]), timeout=300, retry=True)
        if not res.ok:
            return False, f"runner did not start (exit {res.exit_code}): {tail(res.stderr, 300).strip()}"
        lines = dict(line.split("\t", 1) for line in res.stdout.splitlines() if "\t" in line)
        lines = {k: v for k, v in lines.items() if not v.startswith("not implemented")}
        if backend not in lines:
            return False, (f"runtime {self.device.runtime!r}: no runner backend for it in this version "
                           f"of edgegauge (backends: {', '.join(sorted(lines))})")
        status = lines[backend]
        return status.startswith("available"), f"{backend}: {status}"

    def ensure_image(self) -> str:
        """Container mode: make sure ``image`` is on the board (already there, loaded from
        ``image_archive``, or pulled). Returns what was done.

        Raises:
            DeployError: the engine is missing or the image cannot be loaded or pulled.
            TransportError: connection problems.
        """
        engine = words(self.device.engine or "docker")
        image = self.device.image
        res = self.transport.run(f"{sh(*engine, 'image', 'inspect', image)} >/dev/null", timeout=120,
                                 retry=True)
        if res.ok:
            return "present"
        if res.exit_code == 127:
            raise DeployError(f"{self.name}: container engine {engine[0]!r} not found on the board",
                              hint="install docker or podman (`host provision`), or set `engine`")
        archive = self.device.image_archive
        if archive:
            local = Path(archive).expanduser()
            if not local.is_file():
                raise DeployError(f"{self.name}: image_archive {local} does not exist on this host",
                                  hint="write it with `docker save` / `podman save`")
            remote = f"{self.workdir}/{cached_sha256(local)}.image.tar"
            self.transport.put(local, remote)
            res = self.transport.run(f"{sh(*engine, 'load', '-i', remote)}; rc=$?; rm -f {sh(remote)}; "
                                     "exit $rc", timeout=1800)
            if not res.ok:
                raise DeployError(f"{self.name}: loading {local.name} failed: {tail(res.stderr, 300)}")
            return f"loaded from {local.name}"
        res = self.transport.run(sh(*engine, "pull", image), timeout=3600)
        if not res.ok:
            raise DeployError(f"{self.name}: pulling {image} failed: {tail(res.stderr, 300).strip()}",
                              hint="set image_archive for boards without registry access")
        return "pulled"

    def deploy(self, models: list | None = None) -> StepReport:
        """Work folder, runners, image (container mode), runtime import check, and
        optionally pre-staged models. Never raises: the report says what failed."""
        report = StepReport(self.name)
        before = self.transport.stats.bytes_sent
        try:
            self.prepare()
            report.steps.append(("workdir", self.workdir))
            report.steps.append(("runners", f"{self.runners_hash} "
                                 + ("sent" if self.runners_shipped else "already there")))
            if self.container:
                report.steps.append(("image", f"{self.device.image}: {self.ensure_image()}"))
            ok, detail = self.runtime_check()
            report.steps.append(("runtime", detail))
            if not ok:
                raise DeployError(f"{self.name}: runtime not usable: {detail}")
            sent = 0
            for model in models or []:
                sha = cached_sha256(model)
                if sha not in self.models_present:
                    sent += 1
                self.ensure_model(model, sha)
            if models:
                report.steps.append(("models", f"{sent} sent, {len(models) - sent} already there"))
        except (TransportError, DeployError) as exc:
            report.ok = False
            report.error = str(exc)
            report.category = getattr(exc, "category", "deploy")
        report.bytes_sent = self.transport.stats.bytes_sent - before
        return report

    def facts(self) -> dict:
        """Facts for ``host check`` from one round trip: arch, cores, memory, kernel, OS,
        Python, docker/podman, power mode (nvpmodel, cpufreq governor) when known.

        Raises:
            TransportError: connection problems.
        """
        py = sh(self._python())
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
        res = self.transport.run(script, timeout=60, retry=True)
        facts = {k: v for k, v in _kv(res.stdout).items() if v and k != "models"}
        if "mem_kib" in facts:
            facts["mem_gib"] = round(int(facts.pop("mem_kib")) / 2**20, 1)
        return facts

    def check(self) -> CheckReport:
        """Facts plus readiness, changing nothing on the board: the work folder is (or can
        be) writable; native mode: the interpreter imports the runtime module; container
        mode: the engine exists, the image is present and imports the runtime. Never
        raises: an unreachable board or a refused host key gives verdict ``unreachable``."""
        report = CheckReport(self.name, "ready")
        try:
            report.facts = self.facts()
            report.problems = self._readiness(report.facts)
        except TransportError as exc:
            report.verdict = "unreachable"
            report.problems = [str(exc)]
        else:
            if report.problems:
                report.verdict = "not ready"
        report.notes = list(self.transport.stats.notes)
        return report

    def _readiness(self, facts: dict) -> list[str]:
        from runners.backends import implemented_names

        module = runtime_module(self.device.runtime)
        problems = []
        if self.device.runtime not in implemented_names():
            problems.append(f"runtime {self.device.runtime!r} has no runner backend in this version")
        wd = self._workdir_spec()
        probe = (f"import importlib; m = importlib.import_module({module!r}); "
                 "print('edgegauge-ok', getattr(m, '__version__', 'unknown'))")
        script = (
            f"W={shlex.quote(wd)}; "
            'case "$W" in /*) ;; "") W="$HOME" ;; *) W="$HOME/$W" ;; esac; '
            'D="$W"; while [ ! -e "$D" ]; do D=$(dirname "$D"); done; '
            '[ -w "$D" ] && echo workdir=ok || echo "workdir=not writable: $D"; '
        )
        if self.container:
            engine = words(self.device.engine or "docker")
            in_image = sh(*engine, "run", "--rm", *words(self.device.container_args), self.device.image,
                          "python3", "-c", probe)
            script += (
                f"if ! command -v {sh(engine[0])} >/dev/null 2>&1; then echo engine=missing; "
                f"elif ! {sh(*engine, 'image', 'inspect', self.device.image)} >/dev/null 2>&1; then "
                "echo image=missing; else "
                f'echo "runtime=$({in_image} 2>&1 | tail -n 1)"; '
                "fi; exit 0"
            )
        else:
            script += (f'echo "runtime=$({sh(self._python(), "-c", probe)} 2>&1 | tail -n 1)"; '
                       "exit 0")
        res = self.transport.run(script, timeout=300, retry=True)
        got = _kv(res.stdout)
        if got.get("workdir") != "ok":
            problems.append(f"work folder {self.device.workdir}: {got.get('workdir', 'unknown')}")
        if got.get("engine") == "missing":
            problems.append(f"container engine {words(self.device.engine or 'docker')[0]!r} not found")
        elif got.get("image") == "missing":
            problems.append(f"image {self.device.image} not on the board (run `host deploy`)")
        runtime = got.get("runtime", "")
        if runtime.startswith("edgegauge-ok "):
            facts["runtime"] = f"{module} {runtime.split(' ', 1)[1]}"
        elif "runtime" in got:
            problems.append(f"{module} does not import: {runtime or 'no output'}")
        return problems
