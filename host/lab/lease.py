"""Who owns a board, and which runners on it are ours: the board lock and per-cell leases.

**Board lock.** One host drives a board at a time. :class:`BoardLock` holds an exclusive
``flock(2)`` on ``<workdir>/.edgegauge.lock`` through a small Python process on the board
(:data:`LOCK_SCRIPT`) that lives as long as the host's connection: it writes who holds the lock
(user, host, host pid, command, start time, its own pid) into the file, then waits on its
stdin. The host releases by writing ``release`` (the file is emptied); a host that dies or loses
its link closes the stdin, the holder exits and the kernel drops the lock, but the file keeps the
old owner: the next host sees that content with the lock free and reports the lock as *stale*
before it takes it. A lock held by a live holder is refused with the holder named;
``break_lock`` kills that holder (checked to be an edgegauge lock holder by its command line)
and takes the lock, and the caller logs it.

**Leases.** Every runner command starts by sweeping ``<workdir>/leases/``: a lease file
``<token>.lease`` holds ``SID START TAG`` — the session id of a runner command, the start time
of its session leader (``/proc/<sid>/stat`` field 22, so a reused pid is never taken for it)
and a tag naming the campaign (a hash: names never reach a board's shell). A lease that
outlived its command is a leftover (the host was killed, or the connection dropped: without a
pty nothing signals the runner): its whole session is killed (:mod:`host.lab.sessions`), an
optional ``<token>.onkill`` line runs (``docker rm -f`` for a container), and a line
``@edgegauge-leftover SID TAG KILLED`` on stderr tells the host. Then the command writes its own
lease, runs, and removes it. Only the lock holder runs runners, so every lease found by a sweep
is a leftover.

Sources: ``flock(2)``, ``proc(5)`` (``/proc/<pid>/stat`` fields 6 ``session`` and 22
``starttime``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field

from host.errors import BoardBusyError, TransportError
from host.lab import sessions
from host.lab.shell import sh

LOCK_FILE = ".edgegauge.lock"
LEASE_DIR = "leases"
LEFTOVER_MARK = "@edgegauge-leftover"
#: Board exit status of the lock script when another live holder has the lock.
BUSY_EXIT = 75
#: Seconds to wait for the lock script's first line.
LOCK_ANSWER_S = 30.0

#: Board side of the lock (Python >= 3.6, standard library): argv = [marker, path, info JSON].
LOCK_SCRIPT = """\
import fcntl, json, os, sys, time
path, info = sys.argv[2], json.loads(sys.argv[3])
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
old = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip().replace('\\n', ' ')
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.stdout.write('busy ' + (old or '{}') + '\\n')
    sys.stdout.flush()
    sys.exit(75)
old = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip().replace('\\n', ' ')
info.update(pid=os.getpid(), board_start_unix=round(time.time(), 3))
os.ftruncate(fd, 0)
os.pwrite(fd, (json.dumps(info, sort_keys=True) + '\\n').encode(), 0)
os.fsync(fd)
sys.stdout.write('locked ' + (old or '-') + '\\n')
sys.stdout.flush()
for line in sys.stdin:
    if line.strip() == 'release':
        os.ftruncate(fd, 0)
        os.fsync(fd)
        sys.stdout.write('released\\n')
        sys.stdout.flush()
        break
"""
LOCK_MARKER = "edgegauge-lock"


def campaign_tag(campaign: str) -> str:
    """The tag a campaign's leases carry: ``c`` + 12 hex digits of the name's sha256."""
    return "c" + hashlib.sha256(campaign.encode("utf-8")).hexdigest()[:12]


def _sweep(lease_dir: str) -> str:
    """Shell code: kill the session of every lease in ``lease_dir`` whose leader is gone or is
    still the process that wrote it, run its ``.onkill`` line, remove the lease."""
    kill = sessions.kill_function()
    return (
        f"{kill}\n"
        f"for f in {sh(lease_dir)}/*.lease; do [ -f \"$f\" ] || continue; "
        "read -r lsid lstart ltag < \"$f\" 2>/dev/null; "
        "case \"$lsid\" in ''|*[!0-9]*) rm -f \"$f\"; continue ;; esac; "
        "cur=; if read -r s 2>/dev/null < /proc/$lsid/stat; then s=${s##*) }; set -- $s; cur=${20}; fi; "
        "if [ -z \"$cur\" ] || [ \"$cur\" = \"$lstart\" ]; then "
        "_eg_sid=$lsid; n=$(_eg_members | wc -w); "
        "if [ \"$n\" -gt 0 ]; then _eg_kill \"$lsid\" >/dev/null; "
        f"printf '\\n{LEFTOVER_MARK} %s %s %s\\n' \"$lsid\" \"$ltag\" \"$n\" >&2; fi; "
        "[ -f \"${f%.lease}.onkill\" ] && sh \"${f%.lease}.onkill\" >/dev/null 2>&1; fi; "
        "rm -f \"$f\" \"${f%.lease}.onkill\"; done"
    )


def leased(command: str, workdir: str, token: str, tag: str, on_kill: str | None = None) -> str:
    """``command`` (ending in ``exit $?``) preceded by a sweep of the board's leftovers and run
    under a lease: the lease (and ``on_kill``, for a sweep to run should this command be left
    behind) is written before and removed after; the exit status is kept. Must run as the
    session leader (every transport does: ``$$`` is the session id)."""
    lease_dir = f"{workdir}/{LEASE_DIR}"
    lease = f"{lease_dir}/{token}.lease"
    onkill = f"{lease_dir}/{token}.onkill"
    write = (f"mkdir -p {sh(lease_dir)}; "
             "read -r s < /proc/$$/stat; s=${s##*) }; set -- $s; "
             + (f"printf '%s\\n' {sh(on_kill)} > {sh(onkill)}; " if on_kill else "")
             + f"printf '%s %s %s\\n' \"$$\" \"${{20}}\" {sh(tag)} > {sh(lease)}.part && "
             f"mv -f {sh(lease)}.part {sh(lease)}")
    return (f"( {_sweep(lease_dir)} ); {write}; ( {command} ); rc=$?; "
            f"rm -f {sh(lease)} {sh(onkill)}; exit $rc")


def leftovers(stderr: str) -> tuple:
    """(stderr without the sweep's lines, ``[{"sid", "tag", "processes"}]`` killed by it)."""
    kept, found = [], []
    for line in stderr.splitlines(keepends=True):
        if line.startswith(LEFTOVER_MARK):
            fields = line.split()
            if len(fields) == 4 and fields[1].isdigit() and fields[3].isdigit():
                found.append({"sid": int(fields[1]), "tag": fields[2], "processes": int(fields[3])})
                continue
        kept.append(line)
    text = "".join(kept)
    return (text.lstrip("\n") if found else text), found


@dataclass
class LockInfo:
    """What taking a board's lock found: the previous owner (``stale``: its holder had died
    without releasing; ``broken``: a live holder this host killed with ``break_lock``)."""

    path: str
    owner: dict
    stale: dict | None = None
    broken: dict | None = None
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"path": self.path, "owner": self.owner, "stale": self.stale, "broken": self.broken}


def owner_info(command: str, tag: str) -> dict:
    """Who takes a lock: user, host name, host pid, command, campaign tag, start time (UTC)."""
    try:
        user = os.getlogin()
    except OSError:
        import getpass

        user = getpass.getuser()
    return {"user": user, "host": platform.node(), "host_pid": os.getpid(), "command": command,
            "campaign_tag": tag, "start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _parse_owner(text: str) -> dict | None:
    text = text.strip()
    if not text or text in ("-", "{}"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return {"unparsed": text[:300]}
    return doc if isinstance(doc, dict) else {"unparsed": text[:300]}


def describe(owner: dict | None) -> str:
    """``user@host (pid N, `command`, since T)`` for messages."""
    if not owner:
        return "an unknown holder"
    if "unparsed" in owner:
        return f"a holder whose record is unreadable ({owner['unparsed'][:80]})"
    return (f"{owner.get('user', '?')}@{owner.get('host', '?')} (host pid {owner.get('host_pid', '?')}, "
            f"`{owner.get('command', '?')}`, since {owner.get('start_utc', '?')})")


class BoardLock:
    """The lock on one board (see the module docstring). ``acquire`` then ``release``;
    ``alive`` says whether the holder is still connected (after a reconnect, take it again)."""

    def __init__(self, board, owner: dict):
        self.board = board
        self.owner = owner
        self.path = f"{board.workdir}/{LOCK_FILE}"
        self._holder = None

    @property
    def alive(self) -> bool:
        return self._holder is not None and self._holder.alive

    def _start(self):
        # the board's own python3 (the runner's interpreter may be a wrapper, or in an image)
        fallback = "python3" if self.board.container else self.board._python()
        command = (f"if command -v python3 >/dev/null 2>&1; then P=python3; else P={sh(fallback)}; fi; "
                   f"exec \"$P\" -c {sh(LOCK_SCRIPT)} {sh(LOCK_MARKER, self.path, json.dumps(self.owner))}")
        holder = self.board.transport.hold(command)
        line = holder.readline(LOCK_ANSWER_S)
        return holder, line

    def acquire(self, break_lock: bool = False) -> LockInfo:
        """Take the lock (breaking a live holder's with ``break_lock``; a holder of this same
        host process, left by an earlier connection, is always taken back).

        Raises:
            BoardBusyError: another live holder has it (its owner in the message).
            TransportError: the board cannot be reached or the lock script failed.
        """
        info = LockInfo(self.path, self.owner)
        holder, line = self._start()
        if line.startswith("busy ") and (break_lock or self._mine(_parse_owner(line[5:]))):
            holder.close()
            info.broken = _parse_owner(line[5:]) or {}
            self._kill_holder(info.broken)
            holder, line = self._start()
        if line.startswith("busy "):
            holder.close()
            held = _parse_owner(line[5:])
            raise BoardBusyError(
                f"{self.board.name}: in use by {describe(held)}; lock {self.path}",
                device=self.board.name, holder=held,
                hint="wait for that run to end (host bench waits --wait-lock SECONDS for it, 600 by "
                     "default; --no-wait fails at once), then resume; if its host is gone, pass --break-lock")
        if not line.startswith("locked "):
            holder.close()
            raise TransportError(f"{self.board.name}: the board lock could not be taken: "
                                 f"{(line or holder.error())[-300:]!r}", device=self.board.name)
        if info.broken is None:
            info.stale = _parse_owner(line[7:])
        self._holder = holder
        return info

    def _mine(self, held: dict | None) -> bool:
        """Whether a live holder is this very process's own, from a connection the board still
        thinks open (a link that froze, then came back): taken back without ``break_lock``."""
        return bool(held) and held.get("host") == self.owner.get("host") \
            and held.get("host_pid") == self.owner.get("host_pid")

    def _kill_holder(self, owner: dict) -> None:
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return
        script = (f"grep -q {LOCK_MARKER} /proc/{pid}/cmdline 2>/dev/null && kill -KILL {pid}; "
                  f"i=0; while [ -d /proc/{pid} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; exit 0")
        self.board.transport.run(script, timeout=30)

    def release(self) -> None:
        """Empty the lock file and let the holder exit (best effort: a lost link releases
        the lock anyway, leaving a stale record)."""
        holder, self._holder = self._holder, None
        if holder is None:
            return
        try:
            holder.send(b"release\n")
            holder.readline(5.0)
        except (OSError, TransportError):
            pass
        finally:
            holder.close()
