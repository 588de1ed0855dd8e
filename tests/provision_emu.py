"""Fakes for the provisioning tests (tests/test_provision.py). Standard library only.

The vendor tools of the power work (``nvidia-smi``, ``xdputil``, ...) come from tests/vendor_emu.py;
this module adds what provisioning needs besides them:

* :func:`install_tools` writes executable stubs (shebang = ``sys.executable``) into ``bin_dir``:

  - ``docker``: ``--version``; ``info`` (text like the real CLI: ``Runtimes: io.containerd.runc.v2
    runc [nvidia]`` and ``Default Runtime: ...``, taken from the daemon configuration that was in
    effect at the last restart); ``image inspect [--format F] NAME`` (exit 1 ``Error: No such
    image`` when absent); ``load -i FILE`` (reads ``manifest.json`` ``RepoTags`` of a
    ``docker save`` archive); ``pull NAME`` (fails: no registry); ``images``.
  - ``systemctl``: ``restart docker`` re-reads ``<root>/etc/docker/daemon.json`` into the fake
    daemon (that is how ``docker info`` learns about new runtimes); anything else exits 0.
  - ``nvidia-ctk``: ``--version``; ``runtime configure --runtime=docker [--config=F]`` merges the
    ``nvidia`` runtime into F (default ``<root>/etc/docker/daemon.json``).
  - ``nvidia-container-runtime``: ``--version``.

  State lives in ``state_dir/state.json`` (``images``, ``daemon`` = the configuration in effect,
  ``restarts``); every call is appended to ``state_dir/calls.jsonl`` as ``{"tool", "argv"}``.
  :class:`ProvisionEmu` reads both.
* :func:`fake_vitis_modules` writes importable ``vart`` and ``xir`` packages (or a ``vart`` whose
  import fails like a board without ``libvart-runner.so``) for the board's ``PYTHONPATH``.
* :func:`make_docker_archive` writes a minimal ``docker save``-style tar holding only tags;
  :func:`make_vitis_bundle` writes a ZCU104 native bundle (``edgegauge/{runners/, VERSION,
  smoke_test.py}``, the layout of the shared contract) from this repository's runners/.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from vendor_emu import VendorEmu, _load, _locked, write_tool_scripts

TOOLS = ("docker", "systemctl", "nvidia-ctk", "nvidia-container-runtime")
REPO = Path(__file__).resolve().parent.parent
DOCKER_VERSION = "Docker version 24.0.5, build 24.0.5-0ubuntu1~20.04.1"
CTK_VERSION = "NVIDIA Container Toolkit CLI version 1.14.3\ncommit: 53b24618a542025b108239fe602e66e912b7d6e2"
RUNTIME_VERSION = "NVIDIA Container Runtime version 1.11.0\ncommit: d9de4a0"
#: what JetPack 5 installs as /etc/docker/daemon.json (nvidia runtime, no default runtime)
JETPACK_DAEMON_JSON = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}



class ProvisionEmu(VendorEmu):
    """Handle on installed fakes (:class:`vendor_emu.VendorEmu`: ``state()``, ``calls()``,
    ``clear_calls()``, ``env_path()``); ``root`` is the fake ``/``."""

    @property
    def daemon_json(self) -> Path:
        return self.root / "etc/docker/daemon.json"

    def argvs(self, tool: str) -> List[List[str]]:
        return [c["argv"] for c in self.calls(tool)]


def install_tools(
    bin_dir: os.PathLike,
    state_dir: os.PathLike,
    root: os.PathLike,
    tools: Iterable[str] = TOOLS,
    images: Sequence[str] = (),
    daemon: Optional[Dict[str, Any]] = None,
) -> ProvisionEmu:
    """Write the fakes into ``bin_dir`` with a fresh state: ``images`` already present, ``daemon``
    the docker configuration in effect (default: whatever ``<root>/etc/docker/daemon.json``
    holds now, else ``{}``)."""
    bin_dir, state_dir, root = Path(bin_dir), Path(state_dir), Path(root)
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    if daemon is None:
        daemon = _read_json(root / "etc/docker/daemon.json")
    state = {"root": str(root), "images": list(images), "daemon": daemon, "restarts": 0}
    write_tool_scripts(bin_dir, state_dir, state, tools, TOOLS, __file__)
    return ProvisionEmu(bin_dir, state_dir, root)


# ------------------------------------------------------------------------------------------------
# files the tests hand to the playbook
# ------------------------------------------------------------------------------------------------


def fake_vitis_modules(directory: os.PathLike, broken: bool = False) -> Path:
    """Write ``vart`` and ``xir`` packages into ``directory`` (for ``PYTHONPATH``); ``broken``:
    importing ``vart`` fails like on a board whose VART libraries are missing."""
    d = Path(directory)
    for name in ("vart", "xir"):
        (d / name).mkdir(parents=True, exist_ok=True)
    if broken:
        (d / "vart" / "__init__.py").write_text(
            'raise ImportError("libvart-runner.so.3: cannot open shared object file: "\n'
            '                  "No such file or directory")\n'
        )
    else:
        (d / "vart" / "__init__.py").write_text(
            '"""Fake VART (edgegauge tests)."""\n__version__ = "3.0.0"\n\n\nclass Runner:\n'
            "    @staticmethod\n    def create_runner(subgraph, mode):\n"
            '        raise RuntimeError("fake vart: no DPU here")\n'
        )
    (d / "xir" / "__init__.py").write_text(
        '"""Fake XIR (edgegauge tests)."""\n__version__ = "3.0.0"\n\n\nclass Graph:\n'
        "    @staticmethod\n    def deserialize(path):\n"
        '        raise RuntimeError("fake xir: cannot read xmodels")\n'
    )
    return d


def make_docker_archive(path: os.PathLike, tags: Sequence[str]) -> Path:
    """A minimal ``docker save``-style archive: ``manifest.json`` naming ``tags`` (no layers)."""
    path = Path(path)
    manifest = json.dumps([{"Config": "config.json", "RepoTags": list(tags), "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in (("manifest.json", manifest), ("config.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


SMOKE_TEST = '''\
"""Smoke test of the edgegauge ZCU104 bundle (fake, from tests/provision_emu.py)."""
import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here))
import runners  # noqa: E402

print("edgegauge bundle", (here / "VERSION").read_text().strip(), "python", sys.version.split()[0])
'''


def make_vitis_bundle(path: os.PathLike, version: str = "0.1", smoke_test: str = SMOKE_TEST) -> Path:
    """``edgegauge-vitis-ai-bundle-<version>.tar.gz``-style tarball: top folder ``edgegauge/``
    holding this repository's ``runners/`` (``*.py``), ``VERSION`` and ``smoke_test.py``."""
    path = Path(path)
    src = REPO / "runners"
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))

        dirs = sorted({p.parent for p in src.rglob("*.py")})
        for d in dirs:
            info = tarfile.TarInfo(f"edgegauge/{d.relative_to(src.parent)}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for f in sorted(src.rglob("*.py")):
            add(f"edgegauge/{f.relative_to(src.parent)}", f.read_bytes())
        add("edgegauge/VERSION", f"{version}\n".encode())
        add("edgegauge/smoke_test.py", smoke_test.encode())
    return path


# ------------------------------------------------------------------------------------------------
# the fakes themselves
# ------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text) if text.strip() else {}


def _log(state_dir: Path, tool: str, argv: List[str]) -> None:
    with open(Path(state_dir) / "calls.jsonl", "a") as f:
        f.write(json.dumps({"tool": tool, "argv": argv}) + "\n")


def _image_id(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _docker(state_dir: Path, argv: List[str]) -> int:
    st = _load(state_dir)
    args = list(argv)
    if args[:1] in (["--version"], ["-v"]):
        print(DOCKER_VERSION)
        return 0
    if args[:1] == ["info"]:
        daemon = st["daemon"]
        runtimes = sorted({"io.containerd.runc.v2", "runc", *daemon.get("runtimes", {})})
        print("Client:\n Context:    default\n Debug Mode: false\n\nServer:")
        print(f" Containers: 0\n Images: {len(st['images'])}\n Server Version: 24.0.5")
        print(" Storage Driver: overlay2\n Cgroup Driver: cgroupfs")
        print(f" Runtimes: {' '.join(runtimes)}")
        print(f" Default Runtime: {daemon.get('default-runtime', 'runc')}")
        print(" Kernel Version: 5.10.120-tegra\n Operating System: Ubuntu 20.04.6 LTS")
        return 0
    if args[:1] == ["images"]:
        print("REPOSITORY:TAG")
        for name in st["images"]:
            print(name)
        return 0
    if args[:2] == ["image", "inspect"]:
        names = [a for a in args[2:] if not a.startswith("--")]
        if "--format" in args:
            names.remove(args[args.index("--format") + 1])
        missing = [n for n in names if n not in st["images"]]
        if missing or not names:
            print(f"Error: No such image: {missing[0] if missing else ''}", file=sys.stderr)
            print("[]")
            return 1
        for n in names:
            print(_image_id(n) if "--format" in args else json.dumps([{"Id": _image_id(n), "RepoTags": [n]}]))
        return 0
    if args[:1] == ["load"]:
        if "-i" not in args:
            print("requested load from stdin, but stdin is empty", file=sys.stderr)
            return 1
        archive = args[args.index("-i") + 1]
        try:
            with tarfile.open(archive) as tar:
                manifest = json.load(tar.extractfile("manifest.json"))
        except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
            print(f"Error processing tar file({exc})", file=sys.stderr)
            return 1
        tags = [t for entry in manifest for t in entry.get("RepoTags") or []]
        with _locked(state_dir) as s2:
            for t in tags:
                if t not in s2["images"]:
                    s2["images"].append(t)
        for t in tags:
            print(f"Loaded image: {t}")
        return 0
    if args[:1] == ["pull"]:
        print("Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup "
              "registry-1.docker.io: no such host", file=sys.stderr)
        return 1
    print(f"fake docker: unsupported command {args}", file=sys.stderr)
    return 125


def _systemctl(state_dir: Path, argv: List[str]) -> int:
    if argv[:1] == ["restart"] and argv[1:2] in (["docker"], ["docker.service"]):
        with _locked(state_dir) as st:
            st["daemon"] = _read_json(Path(st["root"]) / "etc/docker/daemon.json")
            st["restarts"] += 1
    return 0


def _nvidia_ctk(state_dir: Path, argv: List[str]) -> int:
    if argv[:1] == ["--version"]:
        print(CTK_VERSION)
        return 0
    if argv[:2] == ["runtime", "configure"]:
        if "--runtime=docker" not in argv:
            print("fake nvidia-ctk: only --runtime=docker", file=sys.stderr)
            return 1
        st = _load(state_dir)
        config = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")),
                      str(Path(st["root"]) / "etc/docker/daemon.json"))
        data = _read_json(Path(config))
        data.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
        Path(config).parent.mkdir(parents=True, exist_ok=True)
        Path(config).write_text(json.dumps(data, indent=4) + "\n")
        print(f'INFO[0000] Wrote updated config to {config}\nINFO[0000] It is recommended that docker '
              'daemon be restarted.')
        return 0
    print(f"fake nvidia-ctk: unsupported command {argv}", file=sys.stderr)
    return 1


def _runtime(state_dir: Path, argv: List[str]) -> int:
    if argv[:1] == ["--version"]:
        print(RUNTIME_VERSION)
        return 0
    print("fake nvidia-container-runtime: only --version", file=sys.stderr)
    return 1


_TOOLS = {"docker": _docker, "systemctl": _systemctl, "nvidia-ctk": _nvidia_ctk,
          "nvidia-container-runtime": _runtime}


def main(tool: str, state_dir: str, argv: List[str]) -> int:
    _log(Path(state_dir), tool, argv)
    return _TOOLS[tool](Path(state_dir), argv)
