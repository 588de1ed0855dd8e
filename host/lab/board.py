"""One device as the host drives it: the transport to it, the runner command, and one
benchmark cell. Deploying (work folder, runners, models, image) is :mod:`host.lab.deploy`,
facts, readiness and the power-state probe are :mod:`host.lab.facts`; :class:`Board`'s
methods of those names call them.

Every remote command is built by :func:`host.lab.shell.sh` from quoted arguments: model
names, device names and campaign names never reach the board (models travel as
``<sha256>.onnx``), and inventory values (work folder, interpreter, image, engine options)
are quoted word by word. The same class drives ``--device local`` through
:class:`host.lab.transport.LocalTransport`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.errors import LayerProfileError, MemoryProfileError
from host.lab import deploy as _deploy
from host.lab import facts as _facts
from host.lab import lease, memprofile
from host.lab.benchconfig import RESULT_EXIT_CODES, BenchConfig, RunnerOutcome, tail
from host.lab.deploy import StepReport, runners_bundle
from host.lab.facts import CheckReport
from host.lab.shell import sh, words
from host.lab.transport import SIGNAL_BASE, LocalTransport, SshTransport
from runners.backends import descriptors

#: Where the work folder is mounted inside a container.
CONTAINER_WORKDIR = "/edgegauge"
TOKEN_PREFIX = "edgegauge-cell-"


#: The kernel's count of OOM kills (``oom_kill`` in /proc/vmstat, Linux >= 4.13), read on the
#: board before and after a runner; its rise is the evidence for an OOM kill.
_OOM_PROBE = "awk '/^oom_kill /{print $2}' /proc/vmstat 2>/dev/null"
_OOM_MARK = "@edgegauge-oom"


def _with_oom_counter(command: str) -> str:
    """``command`` (ending in ``exit $?``) in a subshell between two reads of the OOM-kill
    counter, which go to stderr as ``@edgegauge-oom BEFORE AFTER``; the exit status is kept."""
    return (f"o1=$({_OOM_PROBE}); ( {command} ); rc=$?; o2=$({_OOM_PROBE}); "
            f"printf '\\n{_OOM_MARK} %s %s\\n' \"$o1\" \"$o2\" >&2; exit $rc")


def _oom_kills(stderr: str) -> tuple:
    """(stderr without the counter line, OOM kills during the command or None when the
    board does not count them)."""
    head, sep, line = stderr.rpartition(_OOM_MARK)
    if not sep:
        return stderr, None
    fields = line.split()
    try:
        return head.rstrip("\n"), int(fields[1]) - int(fields[0])
    except (IndexError, ValueError):
        return head.rstrip("\n"), None


@dataclass
class CellExtras:
    """What the first runner process of a cell gets besides the model: the fidelity input set
    (host ``.npz``, :mod:`host.campaign.fidelity`) and the dataset folder for accuracy."""

    fidelity_inputs: Path | None = None
    dataset: Path | None = None


@dataclass
class BoardOptions:
    """How to reach boards: SSH settings shared by every device of one command."""

    known_hosts: Path | None = None  # overrides the inventory's UserKnownHostsFile
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5


def open_transport(device, options: BoardOptions | None = None):
    """The transport for an inventory device: local for ``connection=local``, else SSH (through
    the device's ProxyJump host if it has one; the connect timeout is the longer of
    ``options.connect_timeout`` and the inventory's ConnectTimeout)."""
    options = options or BoardOptions()
    if device.connection == "local":
        return LocalTransport(device.name)
    known = options.known_hosts or (Path(device.known_hosts) if device.known_hosts else None)
    timeout = max(options.connect_timeout, device.connect_timeout or 0)
    return SshTransport(device.name, device.host, device.port, device.user, key_file=device.key_file,
                        known_hosts=known, accept_new_host_keys=options.accept_new_host_keys,
                        connect_timeout=timeout, retries=options.retries,
                        backoff_s=options.backoff_s, jump=device.jump,
                        key_source=device.key_source)


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
        self.files_present: set = set()  # input sets and datasets sent this run (board paths)
        self.lease_tag = "untagged"  # campaign tag of this host's runner leases (host.lab.lease)
        self.lock: lease.BoardLock | None = None

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def container(self) -> bool:
        return self.device.mode == "container"

    # -- work folder, runners, models ---------------------------------------------------

    def prepare(self) -> None:
        """:func:`host.lab.deploy.prepare`: work folder, what is there, runners shipped."""
        _deploy.prepare(self)

    @property
    def runners_path(self) -> str:
        return f"{self.workdir}/runners/{self.runners_hash}"

    def ensure_model(self, model: Path, sha256: str | None = None) -> str:
        """:func:`host.lab.deploy.ensure_model`: ``models/<sha256>.onnx`` on the board."""
        return _deploy.ensure_model(self, model, sha256)

    # -- running ------------------------------------------------------------------------

    def _python(self) -> str:
        return self.device.python or "python3"

    def command(self, runner_argv: list[str], *, name: str | None = None, wrapper: tuple = (),
                python_args: tuple = (), env: dict | None = None, after: tuple = ()) -> str:
        """The shell command that runs ``python -m runners ARGV`` on this board, natively
        or in a container (``ENGINE run --rm`` with the work folder mounted), ending in
        ``; exit $?`` so a signal shows as ``128 + N``. Paths in ``runner_argv`` are board
        paths under the work folder; in container mode they are rewritten to the mount.

        For profilers (:mod:`host.lab.memprofile`): ``wrapper`` words go before the
        interpreter, ``python_args`` between it and ``-m runners``, ``env`` is set for the
        runner, and ``after`` (interpreter arguments) runs once the runner exits, keeping
        the runner's exit status.
        """
        def inside(args):
            if not self.container:
                return list(args)
            return [a.replace(self.workdir, CONTAINER_WORKDIR, 1) if a.startswith(self.workdir + "/") else a
                    for a in args]

        python = "python3" if self.container else self._python()
        run = [*inside(wrapper), python, *inside(python_args), "-m", "runners", *inside(runner_argv)]
        if after:
            run_sh = sh(*run) + f"; rc=$?; {sh(python, *inside(after))} >/dev/null 2>&1; exit $rc"
        else:
            run_sh = sh(*run)
        if not self.container:
            values = {"PYTHONPATH": self.runners_path, **(env or {})}
            assigns = " ".join(f"{k}={sh(v)}" for k, v in values.items())
            return f"cd {sh(self.workdir)} && {assigns} " + (f"sh -c {sh(run_sh)}" if after else run_sh) \
                + "; exit $?"
        engine = words(self.device.engine or "docker")
        argv = [*engine, "run", "--rm"]
        if name:
            argv += ["--name", name]
        argv += [*words(self.device.container_args),
                 "-v", f"{self.workdir}:{CONTAINER_WORKDIR}", "-w", CONTAINER_WORKDIR,
                 "-e", f"PYTHONPATH={CONTAINER_WORKDIR}/runners/{self.runners_hash}"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        argv.append(self.device.image)
        argv += ["sh", "-c", run_sh] if after else run
        return f"{sh(*argv)}; exit $?"

    def run_cell(self, model: Path, sha256: str, config: BenchConfig,
                 extras: CellExtras | None = None) -> RunnerOutcome:
        """Run one runner process of a cell: stage the model (and ``extras``), run the runner in
        a fresh process (native or container), read the result JSON back (and the fidelity
        outputs, into ``outcome.arrays``). Runner failures are in the outcome.

        Raises:
            TransportError: the board is unreachable or the connection dropped.
            DiskFullError: no room on the board for the model or the extras.
        """
        t0 = time.monotonic()
        bytes_before = self.transport.stats.bytes_sent
        remote_model = self.ensure_model(model, sha256)
        token = TOKEN_PREFIX + uuid.uuid4().hex
        out = f"{self.workdir}/out/{token}.json"
        argv = ["run", remote_model, "--out", out, *config.runner_args()]
        fid_out = None
        if extras is not None and extras.fidelity_inputs is not None:
            fid_out = f"{self.workdir}/out/{token}.fid.npz"
            argv += ["--fidelity-inputs", _deploy.ensure_inputs(self, extras.fidelity_inputs),
                     "--fidelity-out", fid_out]
        if extras is not None and extras.dataset is not None:
            argv += ["--dataset", _deploy.ensure_dataset(self, extras.dataset)]
        extra_kill = sh(*words(self.device.engine or "docker"), "rm", "-f", token) + " >/dev/null 2>&1" \
            if self.container else None
        command = self._leased(_with_oom_counter(self.command(argv, name=token)), token, extra_kill)
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
        stderr, oom_kills = _oom_kills(res.stderr)
        stderr, killed = lease.leftovers(stderr)
        outcome = RunnerOutcome(argv=[command], exit_code=code, signal=sig, wall_s=res.wall_s,
                                timed_out=res.timed_out, stderr_tail=tail(stderr))
        if code in RESULT_EXIT_CODES:
            try:
                outcome.result = json.loads(self.transport.read(out).decode("utf-8"))
            except (OSError, ValueError) as exc:
                outcome.result_error = f"unreadable result JSON: {exc}"
        if fid_out is not None:
            outcome.arrays = self._read_arrays(fid_out, outcome)
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
            "oom_kills_during": oom_kills,
            "leftovers_killed": killed,
        }
        return outcome

    def _read_arrays(self, remote: str, outcome: RunnerOutcome) -> dict | None:
        """The runner's fidelity outputs (``.npz``), removed from the board; None when the
        runner wrote none (its result says why)."""
        if outcome.result is None or not outcome.result.get("fidelity_outputs"):
            return None
        try:
            with np.load(io.BytesIO(self.transport.read(remote))) as saved:
                return {k: saved[k] for k in saved.files}
        except (OSError, ValueError) as exc:
            outcome.result_error = f"unreadable fidelity outputs: {exc}"
            return None
        finally:
            self.transport.remove(remote)

    def _leased(self, command: str, token: str, on_kill: str | None = None) -> str:
        """``command`` under a lease, after a sweep of leftovers (:func:`host.lab.lease.leased`)."""
        return lease.leased(command, self.workdir, token, self.lease_tag, on_kill)

    def take_lock(self, owner: dict, break_lock: bool = False) -> lease.LockInfo:
        """Take this board's lock (:class:`host.lab.lease.BoardLock`) for ``owner``
        (:func:`host.lab.lease.owner_info`); again after a reconnect.

        Raises:
            BoardBusyError: another live holder has it (``break_lock`` kills that holder).
            TransportError: the board cannot be reached.
        """
        self.lock = lease.BoardLock(self, owner)
        return self.lock.acquire(break_lock)

    def release_lock(self) -> None:
        """Release the lock, if held (best effort)."""
        if self.lock is not None:
            self.lock.release()

    def profile_memory(self, model: Path, sha256: str, config: BenchConfig, method: str) -> dict:
        """One extra runner process under a heap profiler (:mod:`host.lab.memprofile`), with
        one session and a 10-iteration loop (the profiler slows it; its latencies are
        discarded). Returns the profile's ``memory_profile`` block: ``memory_method``,
        ``heap_mib_peak`` and the method's details, ``wall_s``, and the profiled process's own
        ``rss_mib_peak`` for reference.

        Raises:
            MemoryProfileError: the profiler is missing or the run failed.
            TransportError: the board is unreachable.
        """
        remote_model = self.ensure_model(model, sha256)
        token = TOKEN_PREFIX + uuid.uuid4().hex
        out, raw = f"{self.workdir}/out/{token}.json", f"{self.workdir}/out/{token}.{method}"
        run = memprofile.plan(method, raw)
        policy = dataclasses.replace(config.policy, sessions=1, warmup_min_iterations=1, warmup_min_s=0.0,
                                     min_iterations=10, min_duration_s=0.0)
        untimed = dataclasses.replace(config, policy=policy, counters=False)
        argv = ["run", remote_model, "--out", out, *untimed.runner_args()]
        command = self._leased(self.command(argv, name=token, wrapper=run.wrapper,
                                            python_args=run.python_args, env=run.env, after=run.after), token)
        res = self.transport.run(command, timeout=config.timeout_s, kill_pattern=token)
        try:
            if res.exit_code not in RESULT_EXIT_CODES:
                raise MemoryProfileError(f"{self.name}: {method} run exited with {res.exit_code}: "
                                         f"{tail(res.stderr, 400).strip()}",
                                         hint=f"check that {method} is installed where the runner runs")
            block = run.parse(self.transport.read(run.report).decode("utf-8", "replace"))
            doc = json.loads(self.transport.read(out).decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise MemoryProfileError(f"{self.name}: {method} output unreadable: {exc}") from None
        finally:
            for path in {out, raw, run.report}:
                self.transport.remove(path)
        block.update(wall_s=res.wall_s, rss_mib_peak=(doc.get("memory") or {}).get("rss_mib_peak"),
                     note="one extra process (10-iteration loop) under the profiler; latencies discarded")
        return block

    def profile_layers(self, model: Path, sha256: str, config: BenchConfig) -> dict:
        """One extra runner process with the runtime's profiler on (one session, a 20-iteration
        loop; its latencies are discarded): the per-layer rows of
        :func:`runners.profiles.layer_rows` (by its descriptor's ``layer_profiler``), ``method``
        and ``wall_s``.

        Raises:
            LayerProfileError: the run failed or the backend wrote no profile.
            TransportError: the board is unreachable.
        """
        from runners.profiles import NoLayerProfile, layer_rows

        remote_model = self.ensure_model(model, sha256)
        token = TOKEN_PREFIX + uuid.uuid4().hex
        out, prefix = f"{self.workdir}/out/{token}.json", f"{self.workdir}/out/{token}.prof"
        policy = dataclasses.replace(config.policy, sessions=1, warmup_min_iterations=1, warmup_min_s=0.0,
                                     min_iterations=20, min_duration_s=0.0)
        desc = descriptors().get(config.backend)  # e.g. tensorrt: trtexec exports the layers
        extra = dict(desc.profile_options) if desc is not None else {}
        options = tuple(dict(config.options, **extra).items()) if extra else config.options
        untimed = dataclasses.replace(config, policy=policy, counters=False, options=options)
        argv = ["run", remote_model, "--out", out, *untimed.runner_args(), "--profile-prefix", prefix]
        command = self._leased(self.command(argv, name=token), token)
        res = self.transport.run(command, timeout=config.timeout_s, kill_pattern=token)
        files: list = []
        try:
            if res.exit_code not in RESULT_EXIT_CODES:
                raise LayerProfileError(f"{self.name}: profiling run exited with {res.exit_code}: "
                                        f"{tail(res.stderr, 400).strip()}")
            doc = json.loads(self.transport.read(out).decode("utf-8"))
            files = doc.get("profile_files") or []
            rows, method = layer_rows(desc.layer_profiler if desc is not None else "", doc,
                                      self.transport.read)
        except NoLayerProfile:
            with_one = ", ".join(n for n, d in descriptors().items() if d.layer_profiler)
            raise LayerProfileError(f"{self.name}: backend {config.backend!r} wrote no layer profile",
                                    hint=f"--profile needs a backend with a profiler ({with_one})") from None
        except (OSError, ValueError) as exc:
            raise LayerProfileError(f"{self.name}: layer profile unreadable: {exc}") from None
        finally:
            for path in [out, *files]:
                self.transport.remove(path)
        return {"rows": rows, "wall_s": res.wall_s, "method": method}

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
        """:func:`host.lab.facts.power_state`: the board's power mode, governors and clocks."""
        return _facts.power_state(self)

    def abort(self) -> None:
        """Stop this board (another thread calls this on Ctrl-C): the cell in flight has its
        runner's whole session killed (and its container removed); no new command starts."""
        self.transport.abort()

    # -- deploy and check ---------------------------------------------------------------

    def runtime_check(self) -> tuple[bool, str]:
        """:func:`host.lab.facts.runtime_check`: (ok, detail) of the runner's runtime."""
        return _facts.runtime_check(self)

    def ensure_image(self) -> str:
        """:func:`host.lab.deploy.ensure_image`: the container image on the board."""
        return _deploy.ensure_image(self)

    def deploy(self, models: list | None = None) -> StepReport:
        """:func:`host.lab.deploy.deploy`: work folder, runners, image, runtime, models."""
        return _deploy.deploy(self, models)

    def facts(self) -> dict:
        """:func:`host.lab.facts.facts`: arch, cores, memory, OS, Python, engines, power mode."""
        return _facts.facts(self)

    def check(self) -> CheckReport:
        """:func:`host.lab.facts.check`: facts and readiness; never raises."""
        return _facts.check(self)
