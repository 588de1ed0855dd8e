"""Which TVM target a board needs, from its facts; which linker makes its library (Python 3.8, stdlib).

:func:`target_for` is the stable entry point for the host (``host zoo compile --device BOARD`` hands
the board's facts to the descriptor's compiler): ``target_for(facts: dict) -> str`` returns the
``--target`` text that :func:`runners.backends.tvm.compile.parse_target` reads, e.g.
``llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -mattr=+neon -num-cores=4``.

Facts read (all optional but ``arch``; the keys of ``host/lab/facts.py``, plus CPU identification
where the caller has it):

* ``arch``: ``uname -m`` (``aarch64``/``arm64``, ``x86_64``/``amd64``);
* ``cores``: online CPUs (``num-cores``; TVM's thread pool default on the board);
* ``cpu_part`` / ``cpu_implementer``: ``/proc/cpuinfo``'s ``CPU part`` / ``CPU implementer`` of an
  ARM CPU (hex text, e.g. ``0xd08``, ``0x41``);
* ``model`` / ``cpu_model``: the device tree model or ``/proc/cpuinfo``'s model line
  (``Raspberry Pi 4 Model B Rev 1.4``; x86: ``AMD EPYC 7763 64-Core Processor``);
* ``cpu_features`` / ``cpu_flags``: ``/proc/cpuinfo``'s ``Features`` (ARM) or ``flags`` (x86) line;
* ``l4t``: the first line of ``/etc/nv_tegra_release`` (a Jetson).

The table (:data:`ARM_PARTS`, LLVM CPU names as LLVM 17-22 spell them; part numbers from Arm's and
NVIDIA's technical reference manuals, as the Linux kernel's ``arch/arm64/include/asm/cputype.h``
lists them):

============================  ==========  ============================================
board                          CPU part    target
============================  ==========  ============================================
Raspberry Pi 4 (BCM2711)       0xd08       ``-mcpu=cortex-a72 -mattr=+neon``
Raspberry Pi 5 (BCM2712)       0xd0b       ``-mcpu=cortex-a76 -mattr=+neon``
Jetson Nano / TX1 / TX2 (A57)  0xd07       ``-mcpu=cortex-a57 -mattr=+neon``
Jetson AGX/NX Xavier (Carmel)  0x4e:0x004  ``-mcpu=carmel -mattr=+neon``
Jetson Orin (Cortex-A78AE)     0xd42       ``-mcpu=cortex-a78ae -mattr=+neon``
other aarch64 (fallback)       –           ``-mcpu=generic -mattr=+neon`` (ARMv8-A baseline)
x86-64                         –           ``-mcpu=x86-64-v4`` / ``-v3`` / ``x86-64`` by the flags
============================  ==========  ============================================

Without ``cpu_part`` the model string decides for the Raspberry Pis ("Raspberry Pi 4", "Raspberry
Pi 5"); otherwise the aarch64 fallback, which runs on every ARMv8-A CPU but leaves the CPU's own
scheduling model and extensions (dotprod, fp16) unused. x86-64: AVX-512F in the flags gives
``x86-64-v4``, AVX2 and FMA ``x86-64-v3``, else the baseline ``x86-64``; a board compiled on itself
gets its exact CPU from :func:`runners.backends.tvm.compile.host_target` instead.

:data:`CROSS_LINKERS`: the C compiler that links a library for an architecture other than the
host's (Debian's cross toolchains) and the Debian package that installs it.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

#: ``uname -m`` / ``platform.machine()`` / an LLVM triple's first word -> the architecture
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
#: architecture -> the LLVM triple this module emits for it (Linux, glibc)
TRIPLES = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
#: architecture -> (cross C compiler that links its shared libraries on another host, Debian package)
CROSS_LINKERS = {"aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
                 "x86_64": ("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu")}
#: ARM ``CPU implementer:CPU part`` (or the part alone for Arm Ltd., 0x41) -> (LLVM CPU, board)
ARM_PARTS: Dict[str, Tuple[str, str]] = {
    "0xd08": ("cortex-a72", "Raspberry Pi 4 (BCM2711)"),
    "0xd0b": ("cortex-a76", "Raspberry Pi 5 (BCM2712)"),
    "0xd07": ("cortex-a57", "Jetson Nano / TX1 / TX2"),
    "0xd42": ("cortex-a78ae", "Jetson Orin"),
    "0x4e:0x004": ("carmel", "Jetson AGX / NX Xavier"),
}
#: a model string's words -> the CPU part it implies (when ``cpu_part`` is not known)
MODELS = (("raspberry pi 5", "0xd0b"), ("raspberry pi 4", "0xd08"),
          ("raspberry pi compute module 4", "0xd08"))
#: the aarch64 fallback CPU (ARMv8-A baseline; every 64-bit ARM board runs it)
FALLBACK_ARM_CPU = "generic"


def arch_of(word: str) -> Optional[str]:
    """``aarch64`` | ``x86_64`` for a ``uname -m`` word or an LLVM triple (its first field); None
    when unknown."""
    return ARCHES.get(str(word or "").split("-")[0].strip().lower())


def _hex(value) -> str:
    text = str(value or "").strip().lower()
    try:
        return hex(int(text, 16)) if text.startswith("0x") else hex(int(text))
    except ValueError:
        return text


def arm_cpu(facts: dict) -> str:
    """The LLVM CPU name of an aarch64 board's facts (:data:`ARM_PARTS`, then :data:`MODELS`, else
    :data:`FALLBACK_ARM_CPU`)."""
    part, impl = _hex(facts.get("cpu_part")), _hex(facts.get("cpu_implementer"))
    if re.fullmatch(r"0x[0-9a-f]+", part):
        key = part if impl in ("", "0x41") else f"{impl}:0x{int(part, 16):03x}"
        if key in ARM_PARTS:
            return ARM_PARTS[key][0]
    text = " ".join(str(facts.get(k) or "") for k in ("model", "cpu_model")).lower()
    for words, model_part in MODELS:
        if words in text:
            return ARM_PARTS[model_part][0]
    return FALLBACK_ARM_CPU


def x86_cpu(facts: dict) -> str:
    """``x86-64-v4`` (AVX-512F), ``x86-64-v3`` (AVX2 + FMA) or ``x86-64`` from the flags."""
    flags = set(str(facts.get("cpu_flags") or facts.get("cpu_features") or "").lower().split())
    if "avx512f" in flags:
        return "x86-64-v4"
    if {"avx2", "fma"} <= flags:
        return "x86-64-v3"
    return "x86-64"


def target_for(facts: dict) -> str:
    """The TVM ``--target`` text for the board whose facts are ``facts`` (module docstring: the keys
    read and the table). Stable: ``host zoo compile --device BOARD`` calls it through the tvm package.

    Raises:
        ValueError: ``facts`` has no ``arch``, or one TVM artefacts are not compiled for here (only
            aarch64 and x86-64: a 32-bit ARM OS would need an armv7 triple and linker).
    """
    arch = arch_of(facts.get("arch") or "")
    if arch is None:
        raise ValueError(f"board arch {facts.get('arch')!r}: TVM artefacts are compiled here for "
                         f"{', '.join(sorted(TRIPLES))} only")
    parts = ["llvm", f"-mtriple={TRIPLES[arch]}"]
    if arch == "aarch64":
        parts += [f"-mcpu={arm_cpu(facts)}", "-mattr=+neon"]
    else:
        parts.append(f"-mcpu={x86_cpu(facts)}")
    try:
        cores = int(facts.get("cores") or 0)
    except (TypeError, ValueError):
        cores = 0
    if cores > 0:
        parts.append(f"-num-cores={cores}")
    return " ".join(parts)
