"""How long the inventory reader takes on big and hostile files (issue 20 item 10; run by hand).

    .venv/bin/python bench/inventory_size.py [--repeat 5]

Before issue 20, one 1.6 MB host line took 63 s (shlex's tokenizer grows a word one character at a
time: quadratic in the word's length) and a 50 MB file hours. Now a file over 1 MiB is refused
after reading 1 MiB + 1 byte, a line over 8192 characters at that line, and reading within the
limits is linear. Cases (each file written once to a temporary folder, then read ``--repeat``
times; the median wall time is printed):

* ``one 1.6 MB line``, ``50 MB of host lines``: refused (the 63 s and hours cases);
* ``8 KiB lines to 1 MiB``: 120 lines at the line limit, each with one long quoted word;
* ``4096 hosts``, ``host lines to 1 MiB`` (one host listed ~90000 times), ``60000 sections``;
* ``63-deep groups x 128 vars x 4096 hosts``: the largest expansion the limits allow
  (every host in 63 groups, each with its variables);
* ``linear?``: host lines of 256 KiB and 1 MiB in total; the ratio of their medians is near 4
  for a linear reader (it was ~16 per doubling-twice for the quadratic one on one line).

Target: every case under 5 s on a 2-core CI machine; the refusals under 0.1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host.errors import InventoryError  # noqa: E402
from host.lab.inventory import MAX_FILE_BYTES, load_inventory  # noqa: E402


def host_lines(size: int) -> str:
    line = "h meter=usb0 power_rail=5V\n"
    return "[g]\n" + line * (size // len(line) - 1)


def cases() -> dict:
    chain = "".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(62))
    expansion = chain + "[g62]\n" + "".join(f"h{i}\n" for i in range(4096)) + "".join(
        f"[g{j}:vars]\n" + "".join(f"meter{i}_{j % 2}=x\n" for i in range(128)) for j in range(63))
    return {
        "one 1.6 MB line": "[g]\nb1 ansible_host=" + "a" * 1_600_000 + "\n",
        "50 MB of host lines": host_lines(50 * 10**6),
        "8 KiB lines to 1 MiB": "[g]\n" + "".join(f"b{i} meter='{'a' * 8000}'\n" for i in range(120)),
        "4096 hosts": "[g]\n" + "".join(f"h{i} ansible_host=10.0.{i // 256}.{i % 256}\n"
                                        for i in range(4096)),
        "host lines to 1 MiB": host_lines(MAX_FILE_BYTES),
        "60000 sections": "".join(f"[g{i}]\n" for i in range(60000)),
        "63-deep groups x 128 vars x 4096 hosts": expansion,
        "linear? 256 KiB": host_lines(MAX_FILE_BYTES // 4),
        "linear? 1 MiB": host_lines(MAX_FILE_BYTES),
    }


def timed(path: Path, repeat: int) -> tuple[float, str]:
    times, outcome = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            outcome = f"{len(load_inventory(path).devices)} devices"
        except InventoryError as exc:
            outcome = "refused: " + exc.reason[:60]
        times.append(time.perf_counter() - start)
    return statistics.median(times), outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in cases().items():
            path = Path(tmp) / "inventory.ini"
            path.write_text(text)
            medians[name], outcome = timed(path, args.repeat)
            print(f"{name:42} {len(text) / 2**20:7.2f} MiB  median {medians[name]:7.3f} s  {outcome}",
                  flush=True)
    ratio = medians["linear? 1 MiB"] / medians["linear? 256 KiB"]
    print(f"1 MiB / 256 KiB time ratio: {ratio:.1f} (4 = linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
