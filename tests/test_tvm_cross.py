"""Cross-compiling TVM artefacts for an aarch64 board on this x86-64 host (issue 25): a board's target
from its facts (``targets.target_for``), the cross linker (Debian's ``gcc-aarch64-linux-gnu``, installed
by ``labfix.apt_install`` as root, else skipped), the library's ELF header read here (not by TVM),
``meta.json``'s ``arch`` and ``linker``, and the x86 runner's typed refusal before ``dlopen``. Running
the cross-compiled artefact on aarch64 (QEMU, in the arm-cpu image) is tests/test_images.py's
``test_arm_cpu_tvm_image_runs_a_cross_compiled_model_under_qemu``."""

from __future__ import annotations

import json
import platform
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli.main import app
from runners.backends import get_backend
from runners.backends.tvm import compile as tvm_compile
from runners.backends.tvm.targets import target_for
from runners.errors import ArchitectureMismatchError, CrossCompilerMissingError, ModelLoadError
from tests import labfix

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
HOST = {"kind": "llvm", "mtriple": "x86_64-pc-linux-gnu", "mcpu": "znver3", "num-cores": 2}
A64, X64 = "llvm -mtriple=aarch64-linux-gnu", "llvm -mtriple=x86_64-linux-gnu"
RPI4 = "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -mattr=+neon -num-cores=4"
#: ELF e_machine values (System V ABI, the "ELF-64 Object File Format"; glibc's elf.h EM_*)
EM_X86_64, EM_AARCH64 = 62, 183


@pytest.mark.parametrize("facts, target", [
    ({"arch": "aarch64", "cores": "4", "cpu_part": "0xd08"}, RPI4),
    ({"arch": "aarch64", "model": "Raspberry Pi 4 Model B Rev 1.4", "cores": 4}, RPI4),
    ({"arch": "aarch64", "cpu_part": "0xd0b"}, f"{A64} -mcpu=cortex-a76 -mattr=+neon"),
    ({"arch": "aarch64", "model": "Raspberry Pi 5 Model B Rev 1.0", "cpu_part": ""},
     f"{A64} -mcpu=cortex-a76 -mattr=+neon"),
    ({"arch": "aarch64", "cpu_implementer": "0x4e", "cpu_part": "0x004", "cores": 8,
      "l4t": "# R35 (release), REVISION: 4.1"},
     "llvm -mtriple=aarch64-linux-gnu -mcpu=carmel -mattr=+neon -num-cores=8"),
    ({"arch": "aarch64", "cpu_part": "0xd42"}, f"{A64} -mcpu=cortex-a78ae -mattr=+neon"),
    ({"arch": "arm64", "cpu_part": "0xfff"}, "llvm -mtriple=aarch64-linux-gnu -mcpu=generic -mattr=+neon"),
    ({"arch": "x86_64", "cpu_flags": "fpu sse2 avx avx2 fma avx512f", "cores": 16},
     "llvm -mtriple=x86_64-linux-gnu -mcpu=x86-64-v4 -num-cores=16"),
    ({"arch": "x86_64", "cpu_flags": "fpu sse2 avx avx2 fma"}, f"{X64} -mcpu=x86-64-v3"),
    ({"arch": "amd64"}, "llvm -mtriple=x86_64-linux-gnu -mcpu=x86-64"),
])
def test_target_for_a_board_from_its_facts(facts, target):
    assert target_for(facts) == target
    parsed = tvm_compile.parse_target(target, HOST)  # the compiler reads what target_for writes
    assert parsed["mtriple"] == target.split("-mtriple=")[1].split()[0]


@pytest.mark.parametrize("facts", [{}, {"arch": "armv7l"}, {"arch": "riscv64"}])
def test_target_for_refuses_what_is_not_compiled_here(facts):
    with pytest.raises(ValueError, match="compiled here for aarch64, x86_64 only"):
        target_for(facts)


def test_a_missing_cross_linker_is_a_typed_error_naming_the_debian_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    target = tvm_compile.parse_target(RPI4, HOST)
    with pytest.raises(CrossCompilerMissingError, match="apt-get install gcc-aarch64-linux-gnu"):
        tvm_compile.linker_for(target, HOST)
    native = tvm_compile.linker_for(tvm_compile.parse_target(None, HOST), HOST)
    assert native["arch"] == "x86_64" and native["cross"] is False


def test_the_cli_says_which_package_and_compiles_nothing(tmp_path, monkeypatch):
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the host must be x86-64 for aarch64 to be another architecture")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no aarch64-linux-gnu-gcc reachable
    res = CliRunner().invoke(app, ["zoo", "compile", str(TINY), "--backend", "tvm", "--target", RPI4,
                                   "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 1, res.output
    assert "gcc-aarch64-linux-gnu" in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not list((tmp_path / "c").glob("*.tvm"))
    res = CliRunner().invoke(app, ["zoo", "compile", str(TINY), "--backend", "tvm", "--target", RPI4,
                                   "--option", "codegen=tuned", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2 and "codegen=untuned" in " ".join(res.output.split()), res.output


def ensure_cross_linker() -> None:
    """``aarch64-linux-gnu-gcc`` on PATH (``apt-get install gcc-aarch64-linux-gnu`` as root, else skip)."""
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        labfix.apt_install(["gcc-aarch64-linux-gnu"], "aarch64-linux-gnu-gcc missing (cross linker)")


def elf_machine(data: bytes) -> int:
    """``e_machine`` of an ELF file's header: the magic, then the 16-bit field at offset 18 in the
    byte order ``EI_DATA`` (offset 5: 1 little-, 2 big-endian) says."""
    assert data[:4] == b"\x7fELF", data[:4]
    return struct.unpack_from("<H" if data[5] == 1 else ">H", data, 18)[0]


def cross_compile(model: Path, cache: Path, target: str = RPI4):
    """``host zoo compile MODEL --backend tvm --target TARGET`` through the host's entry point."""
    from host.models.runtime_compile import compile_with

    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    ensure_cross_linker()
    return compile_with("tvm", model, {}, target=target, cache_dir=cache)


def test_a_cross_compiled_artefact_is_aarch64_code_and_the_x86_runner_refuses_it(tmp_path):
    if platform.machine() != "x86_64":
        pytest.skip("checks an aarch64 artefact on an x86-64 host")
    path, info = cross_compile(TINY, tmp_path / "c")
    with zipfile.ZipFile(path) as zf:
        library, meta = zf.read("model.so"), json.loads(zf.read("meta.json"))
    assert elf_machine(library) == EM_AARCH64 and data_class(library) == 64
    assert meta["arch"] == "aarch64" and meta["target"]["mtriple"] == "aarch64-linux-gnu"
    assert meta["target"]["mcpu"] == "cortex-a72" and meta["target"]["num-cores"] == 4
    linker = meta["linker"]
    assert linker["cross"] is True and linker["cc"] == "aarch64-linux-gnu-gcc"
    assert linker["package"] == "gcc-aarch64-linux-gnu" and linker["version"]
    assert info["linker"] == linker and info["arch"] == "aarch64" and info["cache_hit"] is False
    backend = get_backend("tvm", {"threads": 1})
    with pytest.raises(ArchitectureMismatchError, match="compiled for aarch64-linux-gnu") as err:
        backend.load(str(path))
    assert isinstance(err.value, ModelLoadError) and "this machine is x86_64" in str(err.value)
    # the host's own target: an x86-64 library, linked by the host's compiler, in another cache file
    native, ninfo = tvm_compile.compile_model(TINY, _proto(TINY), {}, tmp_path / "c")
    with zipfile.ZipFile(native) as zf:
        assert elf_machine(zf.read("model.so")) == EM_X86_64
    assert ninfo["arch"] == "x86_64" and ninfo["linker"]["cross"] is False and native != path
    again, hit = cross_compile(TINY, tmp_path / "c")  # the target is in the key: a hit, nothing linked
    assert again == path and hit["cache_hit"] is True


def data_class(data: bytes) -> int:
    """32 or 64 (ELF ``EI_CLASS``, byte 4)."""
    return {1: 32, 2: 64}[data[4]]


def _proto(model: Path):
    import onnx

    return onnx.load(str(model))
