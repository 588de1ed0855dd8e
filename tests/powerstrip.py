"""A switchable power strip on loopback for the labgrid tests (issue 26): the HTTP API of a Shelly
Gen1 relay (labgrid's ``shelly_gen1`` power model, ``labgrid/driver/power/shelly_gen1.py``;
Shelly's public Gen1 API: ``GET /relay/N`` answers ``{"ison": true}``, ``POST /relay/N`` with
``turn=on|off`` switches) whose outlets feed loopback boards of tests/labfix.py.

Switching an outlet off is pulling a board's plug: its sshd and every process under it
(sessions, runners, the lock holder) are killed, and any runner of its work folder that left the
tree too. Switching it on boots the board: its sshd starts again on the same port with the same
host key, ``boot_s`` seconds later (a real board answers SSH only after it booted), so a client
that does not wait for SSH fails.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class PowerStrip:
    """``PowerStrip(boards, {0: "b1"}, boot_s=1.5)``: outlet index -> board name; ``url`` for the
    exporter's ``NetworkPowerPort`` ``host``; ``events``: ``(monotonic time, index, "off"|"on"|"up")``."""

    def __init__(self, boards, outlets: dict, boot_s: float = 1.5):
        self.boards, self.outlets, self.boot_s = boards, dict(outlets), boot_s
        self.on = {index: True for index in self.outlets}
        self.events: list = []
        self._lock = threading.Lock()
        strip = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _outlet(self):
                parts = self.path.strip("/").split("/")
                if len(parts) == 2 and parts[0] == "relay" and parts[1].isdigit() \
                        and int(parts[1]) in strip.outlets:
                    return int(parts[1])
                self.send_error(404, "no such relay")
                return None

            def _answer(self, index):
                body = json.dumps({"ison": strip.on[index], "has_timer": False}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                index = self._outlet()
                if index is not None:
                    self._answer(index)

            def do_POST(self):
                index = self._outlet()
                if index is None:
                    return
                length = int(self.headers.get("Content-Length") or 0)
                turn = parse_qs(self.rfile.read(length).decode()).get("turn", [""])[0]
                if turn not in ("on", "off"):
                    self.send_error(400, "turn=on or turn=off")
                    return
                strip.switch(index, turn == "on")
                self._answer(index)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def switch(self, index: int, on: bool) -> None:
        """Switch an outlet as the API does (also callable from a test)."""
        name = self.outlets[index]
        with self._lock:
            if on == self.on[index]:
                return
            self.on[index] = on
            self.events.append((time.monotonic(), index, "on" if on else "off"))
            if not on:
                self._unplug(name)
                return
        threading.Timer(self.boot_s, self._boot, args=(index, name)).start()

    def _unplug(self, name: str) -> None:
        self.boards.stop(name)  # sshd and its whole tree (SIGKILL also ends SIGSTOPped processes)
        workdir = str(self.boards.workdir(name))
        found = subprocess.run(["pgrep", "-f", f"{workdir}/"], capture_output=True, text=True)
        for pid in found.stdout.split():
            subprocess.run(["kill", "-9", pid], capture_output=True)

    def _boot(self, index: int, name: str) -> None:
        with self._lock:
            if self.on[index]:
                self.boards.start(name)
                self.events.append((time.monotonic(), index, "up"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
