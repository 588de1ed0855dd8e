"""The playbooks in ``playbooks/`` run through ansible-runner: ``host provision`` and
``host power-mode``.

One call of :func:`run_playbook` is one ``ansible-playbook`` process (started by
ansible-runner) against an Ansible INI inventory — the same file ``host`` reads. Events
stream to a callback (the CLI's live display); the result holds the per-host recap
(``ok/changed/failed/unreachable/skipped/rescued/ignored``), every failure with its host,
task and message, and the values a named task reported per host (``power_mode.yml``'s
last task reports the power state).

Settings that differ from ansible-runner's defaults, and why (docs/devices.md §8,
docs/testing.md §3):

* ``ANSIBLE_HOST_KEY_CHECKING=True``: ansible-runner turns host key checking off by
  default; ``host`` never does (the inventory's ``UserKnownHostsFile`` applies, as for
  ``host bench``).
* ``PATH`` starts with this interpreter's ``bin`` folder, where ``ansible-playbook`` is
  installed next to ``host`` (ansible-runner answers rc 127 otherwise).
* The private data folder (default ``results/ansible``) keeps every run's artifacts
  (``artifacts/<ident>/{stdout,job_events/,rc,status}``), rotated to the last ``rotate``
  runs; the folder of each run is in :attr:`PlaybookRun.artifact_dir`.
* ``suppress_env_files=True``, and no ``env/`` input folder: by default ansible-runner writes
  the first run's extravars, envvars and cmdline into ``<private>/env/`` and reads them back
  on every later run, so ``host power-mode tune --mode X`` would leak ``X`` into the next
  ``tune`` (and ``--check`` into the next ``provision``). Each call passes all of its inputs;
  an ``env/`` left by an older version is removed.
* Cancellation: ``cancel`` (a callable, e.g. ``threading.Event().is_set``) is ansible-runner's
  ``cancel_callback``, polled every :data:`POLL_S` seconds (its ``pexpect_timeout``, set on the
  runner's configuration: ansible-runner's default is 5 s, and a ``settings`` argument is
  dropped when ``env/settings`` is absent);
  once it returns True the whole process tree of ``ansible-playbook`` is stopped and killed
  (SIGSTOP, then SIGKILL; found in ``/proc``, where available), then ansible-runner kills its
  process group and the run's status is ``canceled``. The tree matters: Ansible's workers and
  their ssh clients each run in a session of their own (``setsid``), so ansible-runner's
  ``killpg`` alone would leave them running the task in flight. ``timeout_s`` is enforced the
  same way (status ``timeout``). No ``PLAY RECAP`` is printed then: the recap is counted
  from the per-host results received (``partial``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from host import REPO_ROOT
from host.errors import AnsibleError, PlaybookFailed, PlaybookInterrupted

#: ``playbooks/`` of this checkout; ``EDGEGAUGE_PLAYBOOKS`` points elsewhere.
PLAYBOOKS = REPO_ROOT / "playbooks"
#: Artifacts of this many runs are kept in the private data folder.
ROTATE = 20
#: How often ansible-runner asks ``cancel`` (its ``pexpect_timeout``), seconds.
POLL_S = 0.25
#: ``ansible-playbook --ask-become-pass`` prompts with this; ansible-runner answers it.
BECOME_PROMPT = r"^BECOME password.*:\s*?$"
#: A failure message saying that the board's sudo (su, doas) wanted a password.
_BECOME_FAILURE = re.compile(r"(missing|incorrect) (sudo|su|doas) password|a password is required"
                             r"|waiting for privilege escalation prompt", re.IGNORECASE)
#: The ``runner_on_*`` events that end one task on one host.
_RESULT_EVENTS = {
    "runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


@dataclass
class TaskFailure:
    """One failed (or unreachable) task on one host."""

    host: str
    task: str
    message: str
    unreachable: bool = False

    def __str__(self) -> str:
        kind = "unreachable" if self.unreachable else "failed"
        return f"{self.host}: task {self.task!r} {kind}: {self.message}"


@dataclass
class HostRecap:
    """``PLAY RECAP`` counts of one host (Ansible's ``stats``; ``ok`` includes ``changed``)."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    @property
    def success(self) -> bool:
        return self.failed == 0 and self.unreachable == 0


@dataclass
class PlaybookEvent:
    """What the live display needs from one ansible-runner event."""

    kind: str  # play | task | ok | changed | failed | skipped | unreachable
    host: str | None = None
    task: str | None = None
    message: str | None = None


@dataclass
class PlaybookRun:
    """The outcome of :func:`run_playbook`.

    ``status``: ansible-runner's ``successful | failed | timeout | canceled``; ``reports``:
    host -> the value reported by the ``collect`` task (see :func:`run_playbook`);
    ``partial``: no ``PLAY RECAP`` came (the run was stopped), ``recap`` counts the per-host
    results received before; ``last_task``: the last task that started.
    """

    playbook: str
    status: str
    rc: int | None
    recap: dict = field(default_factory=dict)  # host -> HostRecap
    failures: list = field(default_factory=list)  # [TaskFailure]
    reports: dict = field(default_factory=dict)
    artifact_dir: Path | None = None
    duration_s: float = 0.0
    events: int = 0
    check: bool = False  # check mode: ``changed`` counts what would change
    partial: bool = False
    last_task: str | None = None

    @property
    def changed(self) -> int:
        """Tasks that reported a change, over all hosts."""
        return sum(r.changed for r in self.recap.values())

    def to_json(self) -> dict:
        return {
            "playbook": self.playbook, "status": self.status, "rc": self.rc,
            "recap": {h: vars(r) for h, r in self.recap.items()},
            "failures": [vars(f) for f in self.failures], "reports": self.reports,
            "artifact_dir": str(self.artifact_dir) if self.artifact_dir else None,
            "duration_s": round(self.duration_s, 3), "check": self.check,
            "partial": self.partial, "last_task": self.last_task,
        }


def playbooks_dir() -> Path:
    """The folder holding ``provision.yml`` and ``power_mode.yml``."""
    return Path(os.environ.get("EDGEGAUGE_PLAYBOOKS") or PLAYBOOKS)


def _message(res: dict) -> str:
    """The most useful one-line reason from a failed task's ``res``."""
    for key in ("msg", "stderr", "module_stderr", "stdout", "module_stdout"):
        value = res.get(key)
        if isinstance(value, str) and value.strip():
            lines = [line.strip() for line in value.strip().splitlines()
                     if line.strip() and line.strip().strip("@")]  # drop ssh's @@@ banners
            if key != "msg":
                lines = lines[-3:]
            text = " | ".join(lines)
            if len(text) > 400:  # the first line says what, the last ones why
                text = f"{lines[0][:200]} | ... | {' | '.join(lines[-2:])[-190:]}"
            return text
    if res.get("rc") is not None:
        return f"exit code {res['rc']}"
    return "no message"


def run_playbook(
    playbook: str,
    inventory: Path,
    *,
    limit: str | None = None,
    tags: list | None = None,
    extravars: dict | None = None,
    private_dir: Path = Path("results/ansible"),
    rotate: int = ROTATE,
    collect: str | None = None,
    on_event: Callable[[PlaybookEvent], None] | None = None,
    timeout_s: int | None = None,
    forks: int = 10,
    envvars: dict | None = None,
    check: bool = False,
    become_password: str | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PlaybookRun:
    """Run ``playbooks/<playbook>`` with ansible-runner and summarise it.

    Args:
        playbook: file name in :func:`playbooks_dir`, e.g. ``"provision.yml"``.
        inventory: the Ansible INI inventory file.
        limit: Ansible ``--limit`` pattern (e.g. ``"rpi4-1,xavier-1"``).
        tags: ``--tags`` (e.g. ``["show"]``).
        extravars: ``--extra-vars`` (written by ansible-runner to ``env/extravars``:
            never secrets).
        private_dir: ansible-runner's private data folder; artifacts are kept there.
        rotate: keep the artifacts of this many runs.
        collect: name of a task that reports one value per host (``debug: var: X``):
            from its ``runner_on_ok`` events, ``res[X]`` goes to ``reports[host]``.
        on_event: called for every play start, task start and per-host task result.
        timeout_s: kill ``ansible-playbook`` and its process tree after this many seconds
            (status ``timeout``, ``partial`` recap).
        forks: hosts in parallel.
        envvars: extra environment for ``ansible-playbook``.
        check: Ansible's check mode (``--check``): report what would change, change nothing
            (the playbooks skip the checks that need a change made first).
        become_password: the password the boards' ``sudo`` asks for (``become: true``
            tasks): ``ansible-playbook --ask-become-pass``, answered by ansible-runner's
            pexpect loop; it is never written to the artifacts (no ``env/passwords``).
        cancel: asked every :data:`POLL_S` s while the play runs; True stops it (SIGKILL to
            ``ansible-playbook``'s process group, status ``canceled``, ``partial`` recap).
            None (and no ``timeout_s``): ansible-runner's default, which in the main thread
            installs SIGINT and SIGTERM handlers that cancel (and are not restored).

    Returns:
        :class:`PlaybookRun` — also when hosts failed (``status`` ``failed``) or the run was
        cancelled (``canceled``); the caller decides (see :func:`raise_for_failures`).

    Raises:
        AnsibleError: ansible-runner is not installed, ``ansible-playbook`` is not found,
            or the playbook or inventory does not exist.
    """
    ansible_runner, book, inventory = _inputs(playbook, inventory)
    env, bindir = _environment(envvars)
    private_dir = _private_dir(private_dir)
    events = _EventCollector(on_event or (lambda event: None), collect)
    options = (["--check"] if check else []) + (["--ask-become-pass"] if become_password is not None else [])
    ident = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    canceller = _Canceller(cancel, timeout_s, events) if cancel or timeout_s else None
    kwargs = dict(
        private_data_dir=str(private_dir), project_dir=str(book.parent), playbook=str(book),
        inventory=str(inventory), limit=limit, extravars=extravars or None, envvars=env,
        quiet=True, rotate_artifacts=rotate, event_handler=events, ident=ident, forks=forks,
        suppress_env_files=True,
        cmdline=" ".join(options) or None,
        passwords={BECOME_PROMPT: become_password} if become_password is not None else None,
        cancel_callback=canceller,
    )
    if tags:
        kwargs["tags"] = ",".join(tags)
    runner, duration = _run(ansible_runner, {k: v for k, v in kwargs.items() if v is not None})
    if runner.rc == 127:
        raise AnsibleError("ansible-playbook was not found on PATH",
                           hint=f"install ansible-core into this environment ({bindir})")
    return _summary(playbook, runner, duration, events, timed_out=bool(canceller and canceller.timed_out),
                    check=check)


def _summary(playbook: str, runner, duration: float, events, *, timed_out: bool, check: bool) -> PlaybookRun:
    """The :class:`PlaybookRun` of a finished ansible-runner ``Runner``; without ``PLAY RECAP``
    (the run was stopped) the recap is counted from ``events`` (``partial``)."""
    partial = runner.stats is None and bool(events.counts)
    return PlaybookRun(playbook=playbook, status="timeout" if timed_out else runner.status, rc=runner.rc,
                       recap=events.recap() if partial else _recap(runner.stats),
                       failures=events.failures, reports=events.reports,
                       artifact_dir=Path(runner.config.artifact_dir), duration_s=duration,
                       events=events.count, check=check, partial=partial, last_task=events.task)


def _private_dir(private_dir: Path) -> Path:
    """The private data folder, resolved and created, without ``env/`` (see the module doc)."""
    private_dir = Path(private_dir).resolve()
    private_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(private_dir / "env", ignore_errors=True)  # ansible-runner's input folder
    return private_dir


def _run(ansible_runner, kwargs: dict) -> tuple:
    """(the finished ansible-runner ``Runner``, seconds): what ``ansible_runner.run()`` does,
    with ``pexpect_timeout`` :data:`POLL_S` (how often ``cancel`` is asked; module doc)."""
    t0 = time.monotonic()
    runner = ansible_runner.interface.init_runner(**kwargs)
    runner.config.pexpect_timeout = POLL_S
    runner.run()
    return runner, time.monotonic() - t0


def _inputs(playbook: str, inventory: Path) -> tuple:
    """(the ansible_runner module, the playbook file, the resolved inventory file).

    Raises:
        AnsibleError: ansible-runner is missing, or the playbook or inventory does not exist.
    """
    try:
        import ansible_runner
        import ansible_runner.interface  # noqa: F401 (init_runner)
    except ImportError:
        raise AnsibleError("ansible-runner is not installed",
                           hint="pip install -e . (it depends on ansible-runner and ansible-core)") from None
    book = playbooks_dir() / playbook
    if not book.is_file():
        raise AnsibleError(f"playbook {book} not found",
                           hint="set EDGEGAUGE_PLAYBOOKS to the playbooks folder")
    inventory = Path(inventory).resolve()
    if not inventory.is_file():
        raise AnsibleError(f"inventory {inventory} not found")
    return ansible_runner, book, inventory


def _environment(envvars: dict | None) -> tuple[dict, str]:
    """(environment of ``ansible-playbook``, this Python's bin folder, first on its PATH)."""
    bindir = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "/usr/bin:/bin")]),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
    }
    env.update(envvars or {})
    return env, bindir


class _EventCollector:
    """ansible-runner's ``event_handler``: counts events, collects failures and the
    ``collect`` task's per-host reports, and passes a :class:`PlaybookEvent` to ``notify``."""

    def __init__(self, notify: Callable[[PlaybookEvent], None], collect: str | None):
        self.notify = notify
        self.collect = collect
        self.failures: list = []
        self.reports: dict = {}
        self.count = 0
        self.task: str | None = None  # the last task that started
        self.pid: int | None = None  # ansible-playbook's (its callback plugin reports it)
        self.counts: dict = {}  # host -> state -> results (the recap when no PLAY RECAP comes)

    def __call__(self, event: dict) -> bool:
        self.count += 1
        if self.pid is None and isinstance(event.get("pid"), int):
            self.pid = event["pid"]
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self.notify(PlaybookEvent("play", task=data.get("play")))
        elif kind == "playbook_on_task_start":
            self.task = data.get("task")
            self.notify(PlaybookEvent("task", task=self.task))
        elif kind in _RESULT_EVENTS:
            self._result(kind, data)
        return True

    def _result(self, kind: str, data: dict) -> None:
        host, task = data.get("host"), data.get("task")
        res = data.get("res") or {}
        state = _RESULT_EVENTS[kind]
        if state == "ok" and res.get("changed"):
            state = "changed"
        if kind == "runner_on_failed" and data.get("ignore_errors"):
            state = "ok"
        elif state in ("failed", "unreachable"):
            self.failures.append(TaskFailure(host, task, _message(res), unreachable=state == "unreachable"))
        per_host = self.counts.setdefault(host, {})
        per_host[state] = per_host.get(state, 0) + 1
        if kind == "runner_on_failed" and data.get("ignore_errors"):
            per_host["ignored"] = per_host.get("ignored", 0) + 1
        if kind == "runner_on_ok" and self.collect and task == self.collect:
            own = [k for k in res if not k.startswith("_") and k not in ("changed", "failed")]
            if own:
                self.reports[host] = res[own[0]]
        self.notify(PlaybookEvent(state, host=host, task=task,
                                  message=_message(res) if state in ("failed", "unreachable") else None))

    def recap(self) -> dict:
        """host -> :class:`HostRecap` counted from the results received (``ok`` includes
        ``changed``, as in Ansible's recap)."""
        recap = {}
        for host, c in self.counts.items():
            recap[host] = HostRecap(host, ok=c.get("ok", 0) + c.get("changed", 0),
                                    changed=c.get("changed", 0), failed=c.get("failed", 0),
                                    unreachable=c.get("unreachable", 0), skipped=c.get("skipped", 0),
                                    ignored=c.get("ignored", 0))
        return recap


class _Canceller:
    """ansible-runner's ``cancel_callback``: True once ``cancel`` says so or ``timeout_s`` has
    passed (then ``timed_out``); the first time, it stops ``ansible-playbook``'s process tree
    (see the module doc) before ansible-runner's own kill of its process group."""

    def __init__(self, cancel: Callable[[], bool] | None, timeout_s: float | None, events: _EventCollector):
        self.cancel = cancel
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self.events = events
        self.done = self.timed_out = False

    def __call__(self) -> bool:
        if not self.done:
            self.timed_out = self.deadline is not None and time.monotonic() > self.deadline
            if not (self.timed_out or (self.cancel is not None and self.cancel())):
                return False
            if self.events.pid:
                _kill_tree(self.events.pid)
            self.done = True
        return True


def _parents() -> dict:
    """pid -> parent pid of every live process from ``/proc/<pid>/stat`` (zombies left out;
    empty where there is no ``/proc``)."""
    table = {}
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return table
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, ... after "pid (comm)"
        if len(fields) > 1 and fields[0] != "Z":
            table[int(pid)] = int(fields[1])
    return table


def _tree(root: int) -> set:
    """``root`` and its live descendants (empty when ``root`` is gone)."""
    parents = _parents()
    if root not in parents:
        return set()
    found, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def _kill_tree(root: int) -> None:
    """SIGSTOP ``root``'s process tree until no new process appears in it (a stopped
    process forks no more), then SIGKILL all of it."""
    stopped: set = set()
    for _ in range(10):
        new = _tree(root) - stopped
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:  # already gone
        pass


def _recap(stats: dict | None) -> dict:
    """ansible-runner's ``stats`` -> host -> :class:`HostRecap`."""
    recap: dict = {}
    stats = stats or {}
    for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored", "processed"):
        for host in (stats.get(key) or {}):
            recap.setdefault(host, HostRecap(host))
    attr = {"failures": "failed", "dark": "unreachable"}
    for key, per_host in stats.items():
        if key == "processed" or not isinstance(per_host, dict):
            continue
        for host, count in per_host.items():
            setattr(recap[host], attr.get(key, key), int(count))
    return recap


def raise_for_failures(run: PlaybookRun, *, what: str, hint: str | None = None) -> None:
    """Raise :class:`PlaybookFailed` unless every host succeeded.

    The message names every failed host, its task and the message, and the artifacts.

    Raises:
        PlaybookInterrupted: the run was canceled (``cancel`` of :func:`run_playbook`): the
            message names the task it stopped in, the hosts' results so far and the artifacts.
        PlaybookFailed: a host failed or was unreachable, no host matched, or the run
            timed out.
    """
    if run.status == "successful" and run.recap and all(r.success for r in run.recap.values()):
        return
    if run.status == "canceled":
        _raise_interrupted(run, what, hint)
    lines = [str(f) for f in run.failures]
    if not run.recap and not lines:
        lines.append("no host matched the selection" if run.status == "successful"
                     else f"ansible-playbook ended with status {run.status} (rc {run.rc})")
    elif run.status in ("timeout", "canceled"):
        lines.append(f"ansible-playbook {run.status}")
    if any(_BECOME_FAILURE.search(f.message) for f in run.failures):
        hint = ("the boards' sudo wants a password: run again with --ask-become-pass (-K) or "
                "--become-password-file FILE" + (f"; {hint}" if hint else ""))
    where = f"; artifacts: {run.artifact_dir}" if run.artifact_dir else ""
    raise PlaybookFailed(f"{what} failed:\n  " + "\n  ".join(lines) + where, run, hint=hint)


def _raise_interrupted(run: PlaybookRun, what: str, hint: str | None) -> None:
    """Raise :class:`PlaybookInterrupted` for a canceled run (see :func:`raise_for_failures`)."""
    during = f" during task {run.last_task!r}" if run.last_task else ""
    lines = [f"{h}: {r.ok} ok ({r.changed} changed), {r.failed} failed, {r.unreachable} unreachable, "
             f"{r.skipped} skipped before the stop" for h, r in sorted(run.recap.items())]
    lines += [str(f) for f in run.failures]
    where = f"\n  artifacts: {run.artifact_dir}" if run.artifact_dir else ""
    body = "".join(f"\n  {line}" for line in lines) or "\n  no host had finished a task"
    raise PlaybookInterrupted(f"{what} interrupted{during}; ansible-playbook was stopped:{body}{where}",
                              run, hint=hint)
