"""The ssh arguments of an inventory (``ansible_ssh_common_args`` / ``ansible_ssh_extra_args``):
only the ssh options ``host``'s own SSH honours or can safely ignore are accepted, so that
``ansible`` and ``host`` never reach a board by different routes (:class:`SshArgs`, a part of
:class:`host.lab.inventory._Parser`).
"""

from __future__ import annotations

import re
import shlex

#: ssh options (``-o Name=value``, names case-insensitive) that ``host``'s own SSH honours:
#: the known_hosts file, one jump host (also ``-J``), the connect timeout (the longer of it and
#: ``--connect-timeout`` is used).
SSH_HONOURED = ("UserKnownHostsFile", "ProxyJump", "ConnectTimeout")
#: ssh options accepted and not needed by ``host`` -> the values accepted (None: any).
#: ``host`` always checks host keys strictly (``--accept-new-host-keys`` is its accept-new),
#: runs its own keepalive, logs in with keys only and never prompts.
SSH_ACCEPTED = {
    "StrictHostKeyChecking": None, "ServerAliveInterval": "int", "ServerAliveCountMax": "int",
    "IdentitiesOnly": None, "PubkeyAuthentication": ("yes",), "PasswordAuthentication": ("no",),
    "KbdInteractiveAuthentication": ("no",), "ChallengeResponseAuthentication": ("no",),
    "BatchMode": ("yes",), "LogLevel": None, "Compression": None,
}
_FORWARD = ("host cannot forward ports: remove it (a tunnel to the board belongs in ProxyJump, or "
            "open it yourself and point ansible_host/ansible_port at it)")
_MUX = "host keeps its own connection per board: remove it (ansible.cfg's ssh_args may set it for Ansible)"
#: ssh options refused with a specific remedy (names lower-case); any other one is refused too.
SSH_REFUSED = {
    "proxycommand": "use ProxyJump=[user@]host[:port] instead of ProxyCommand",
    "localforward": _FORWARD, "remoteforward": _FORWARD, "dynamicforward": _FORWARD,
    "controlmaster": _MUX, "controlpath": _MUX, "controlpersist": _MUX,
    "port": "write ansible_port=N", "user": "write ansible_user=NAME", "hostname": "write ansible_host=ADDR",
    "identityfile": "write ansible_ssh_private_key_file=PATH",
    "forwardagent": "host never forwards the agent: remove it",
}
#: ssh flags refused with a specific remedy (besides -o, -J and -C, every flag is refused).
SSH_FLAGS_REFUSED = {
    "-L": _FORWARD, "-R": _FORWARD, "-D": _FORWARD, "-W": "use -J or ProxyJump",
    "-p": "write ansible_port=N", "-l": "write ansible_user=NAME",
    "-i": "write ansible_ssh_private_key_file=PATH", "-A": "host never forwards the agent: remove it",
    "-F": "host reads no config file given with -F: write the options here with -o",
}
_SSH_ARGS_KEYS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")  # ssh's order: first value wins
_JUMP = re.compile(r"(?:([A-Za-z0-9_.-]+)@)?([A-Za-z0-9_.-]+)(?::([0-9]+))?\Z")


class SshArgs:
    """The ssh-argument checks of the inventory parser; it provides ``error(line, message)``
    (an :class:`host.errors.InventoryError`) and ``ssh_cache`` (a dict)."""

    def ssh_options(self, merged: dict) -> dict:
        """The ssh options of ``ansible_ssh_common_args`` then ``ansible_ssh_extra_args`` (as
        Ansible puts them on ssh's command line; the first value of an option wins, as in ssh):
        lower-case name -> checked value (ProxyJump a canonical ``[user@]host:port`` or None,
        ConnectTimeout a float). Raises InventoryError at the line that set a refused option."""
        cache_key = tuple(merged.get(key) for key in _SSH_ARGS_KEYS)
        if cache_key not in self.ssh_cache:  # every host of a group shares its group's arguments
            self.ssh_cache[cache_key] = self.ssh_options_of(merged)
        return self.ssh_cache[cache_key]

    def ssh_options_of(self, merged: dict) -> dict:
        options: dict = {}
        for key in _SSH_ARGS_KEYS:
            if key in merged:
                value, lineno = merged[key]
                for written, raw in self.ssh_args(key, value, lineno):
                    if written.lower() not in options:
                        options[written.lower()] = self.ssh_value(key, written, raw, lineno)
        return options

    def ssh_args(self, key: str, args, lineno: int) -> list[tuple[str, str]]:
        """``(option name as written, raw value)`` pairs of one ssh argument string, in order."""
        try:
            tokens = shlex.split(str(args))
        except ValueError as exc:
            raise self.error(lineno, f"{key} cannot be split ({exc}): check the quotes") from None
        pairs = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            flag, attached = token[:2], token[2:]
            if flag not in ("-o", "-J", "-C") or (flag == "-C" and attached):
                raise self.error(lineno, self.refused_flag(key, token))
            i += 1
            if flag == "-C":
                continue  # compression: harmless, host does not compress
            if not attached:
                if i == len(tokens):
                    raise self.error(lineno, f"{key}: {flag} at the end needs a value")
                attached, i = tokens[i], i + 1
            if flag == "-J":
                pairs.append(("ProxyJump", attached))
                continue
            m = re.match(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(\S.*)\Z", attached, re.DOTALL)
            if not m:
                raise self.error(lineno, f"{key}: -o {attached!r} is not Name=value")
            pairs.append((m.group(1), m.group(2).strip()))
        return pairs

    @staticmethod
    def refused_flag(key: str, token: str) -> str:
        if not token.startswith("-") or token == "-":
            return f"{key}: unexpected {token!r}: only ssh options (-o Name=value, -J, -C) belong here"
        remedy = SSH_FLAGS_REFUSED.get(token[:2], "remove it")
        return (f"{key}: ssh flag {token!r} cannot be honoured by host's own SSH: {remedy} "
                f"(accepted: -o Name=value for {', '.join(SSH_HONOURED + tuple(SSH_ACCEPTED))}; -J; -C)")

    def ssh_value(self, key: str, written: str, raw: str, lineno: int):
        """Check one option; returns what host keeps of it (None for an accepted, unused one)."""
        name = written.lower()
        spelled = {n.lower(): n for n in SSH_HONOURED + tuple(SSH_ACCEPTED)}.get(name)
        if spelled is None:
            remedy = SSH_REFUSED.get(name, "remove it")
            raise self.error(lineno, f"{key}: ssh option {written} cannot be honoured by host's own SSH: "
                                     f"{remedy} (accepted: {', '.join(SSH_HONOURED + tuple(SSH_ACCEPTED))}; "
                                     "host reads no ssh config file, so ~/.ssh/config cannot set it either)")
        if name == "userknownhostsfile":
            return raw
        if name == "proxyjump":
            return self.jump(key, raw, lineno)
        allowed = SSH_ACCEPTED.get(spelled)
        if name == "connecttimeout" or allowed == "int":
            if not raw.isdigit() or (name == "connecttimeout" and int(raw) == 0):
                raise self.error(lineno, f"{key}: {spelled}={raw!r} is not a positive whole number "
                                         "of seconds")
            return float(raw) if name == "connecttimeout" else None
        if allowed is not None and raw.lower() not in allowed:
            raise self.error(lineno, f"{key}: {spelled}={raw} cannot be honoured by host's own SSH (it "
                                     f"accepts only {spelled}={'|'.join(allowed)}: host logs in with keys "
                                     "only and never prompts)")
        return None

    def jump(self, key: str, raw: str, lineno: int) -> str | None:
        """ProxyJump's value as ``[user@]host:port`` (None for ``none``)."""
        if raw.lower() == "none":
            return None
        if "," in raw:
            raise self.error(lineno, f"{key}: ProxyJump={raw}: host supports a single jump host, not a "
                                     "chain: use one jump host that reaches the board directly")
        m = _JUMP.match(raw)
        port = int(m.group(3)) if m and m.group(3) else 22
        if not m or not 1 <= port <= 65535:
            raise self.error(lineno, f"{key}: ProxyJump={raw} is not [user@]host[:port] (host names and "
                                     "IPv4 addresses only)")
        user, host = m.group(1), m.group(2)
        return f"{user + '@' if user else ''}{host}:{port}"
