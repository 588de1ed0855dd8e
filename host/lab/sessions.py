"""A command's whole process session on a board: how it starts, how it is named, how it is killed.

Every command the host runs on a board is the leader of a new session: sshd calls ``setsid()``
before it starts the login shell for a command, and :class:`host.lab.transport.LocalTransport`
starts ``/bin/sh`` with ``start_new_session=True``. Over SSH the command is wrapped
(:func:`wrap`) so that its first act is to write its session id (``$$`` of the session leader)
on stderr; locally the id is the child's pid. On a timeout or an interrupt the host kills by that
id — every process of the session, repeatedly, until none is left (:func:`kill_script`) — instead
of by a command-line pattern, and the caller learns whether something survived.

Why (the cause of a flaky timeout seen on fresh installs): the previous code used invoke's
``Runner`` timeout. Its timer thread closes the channel and ``CommandTimedOut`` is raised only
if ``Runner.timed_out`` — ``not timer.is_alive()`` — is already true when the main thread
checks. When the main thread won that race (scheduling, a cold process) the command came back
with exit status -1, was taken for a lost connection (``unreachable``), and nothing was killed:
without a pty, closing the channel sends no signal, so the runner kept running on the board.
Here the deadline and the kill are ours, in one thread, and the kill is checked.

Works with any POSIX ``sh`` and ``/proc`` (Debian/Ubuntu, JetPack, PetaLinux busybox): no
``pkill``/``pgrep`` needed for the session kill.
"""

from __future__ import annotations

import shlex

#: Prefix of the first stderr line a wrapped command writes: ``<mark><sid>``.
SID_MARK = "@edgegauge-sid "
#: Give up re-killing a session after this long (seconds); the kill script then exits 3.
KILL_WAIT_S = 5.0
#: Exit status of :func:`kill_script` when processes of the session survived.
KILL_LEFT_EXIT = 3


def wrap(command: str) -> str:
    """The shell line that runs ``command`` as the session leader and first reports its session id.

    ``exec /bin/sh -c`` keeps the pid of the login shell sshd started (so ``$$`` is the session
    id whatever the login shell is), then ``printf`` writes ``SID_MARK + sid`` on stderr.
    """
    inner = f"printf '%s%s\\n' {shlex.quote(SID_MARK)} \"$$\" >&2; {command}"
    return f"exec /bin/sh -c {shlex.quote(inner)}"


def split_sid(stderr: str) -> tuple:
    """``(sid or None, stderr without the marker line)`` of a wrapped command's stderr."""
    first, sep, rest = stderr.partition("\n")
    if not first.startswith(SID_MARK):
        return None, stderr
    try:
        return int(first[len(SID_MARK):]), rest
    except ValueError:
        return None, stderr


def kill_function(wait_s: float = KILL_WAIT_S) -> str:
    """Shell functions ``_eg_members SID`` (the pids of session SID's non-zombie processes,
    from ``/proc/<pid>/stat`` field 6) and ``_eg_kill SID`` (SIGKILL the session's process
    group, then its members every 0.1 s until none is left; prints the pids still alive after
    ``wait_s``, nothing when the session is gone)."""
    tries = max(1, int(wait_s / 0.1))
    return (
        "_eg_members() { for d in /proc/[0-9]*; do read -r s 2>/dev/null < \"$d/stat\" || continue; "
        "s=${s##*) }; set -- $s; "
        "[ \"$4\" = \"$_eg_sid\" ] && [ \"$1\" != Z ] && printf '%s ' \"${d#/proc/}\"; done; }\n"
        "_eg_kill() { _eg_sid=$1; kill -KILL -- -\"$1\" 2>/dev/null; _eg_i=0; "
        "while _eg_left=$(_eg_members); [ -n \"$_eg_left\" ]; do "
        f"[ $_eg_i -ge {tries} ] && break; "
        "kill -KILL $_eg_left 2>/dev/null; _eg_i=$((_eg_i+1)); sleep 0.1; done; printf '%s' \"$_eg_left\"; }"
    )


def kill_script(sid: int | None, *, pattern: str | None = None, on_kill: str | None = None,
                wait_s: float = KILL_WAIT_S) -> str:
    """Shell code that kills session ``sid`` until none of its (non-zombie) processes is left.

    Steps: SIGKILL the session leader's process group; then, every 0.1 s, list the session's
    processes from ``/proc/<pid>/stat`` (field 6, session id; zombies skipped) and SIGKILL them,
    until the list is empty (exit 0) or ``wait_s`` has passed (prints ``left: PIDS``, exit
    :data:`KILL_LEFT_EXIT`). ``pattern`` (``sid`` unknown) kills the sessions of the processes
    whose command line contains it, the way earlier versions did; ``on_kill`` runs last
    (e.g. ``docker rm -f NAME`` for a container that lives outside the session).
    """
    lines = []
    if sid is not None:
        lines += [kill_function(wait_s), f"left=$(_eg_kill {int(sid)})"]
    if pattern:
        regex = shlex.quote(f"[{pattern[0]}]{pattern[1:]}")  # "[x]yz" never matches this script
        lines.append(f"for p in $(pgrep -f -- {regex} 2>/dev/null); do "
                     's=$(ps -o sid= -p "$p" 2>/dev/null | tr -d " "); '
                     '[ -n "$s" ] && [ "$s" != 0 ] && pkill -KILL -s "$s"; done; '
                     f"pkill -KILL -f -- {regex} 2>/dev/null")
    if on_kill:
        lines.append(f"{{ {on_kill}; }} >/dev/null 2>&1")
    if sid is not None:
        lines.append(f"[ -n \"$left\" ] && {{ echo \"left: $left\"; exit {KILL_LEFT_EXIT}; }}")
    lines.append("exit 0")
    return "\n".join(lines)
