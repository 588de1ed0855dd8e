"""Every playbook in playbooks/ passes `ansible-playbook --syntax-check` and `ansible-lint --offline`
(the venv's binaries; ansible-lint also lints the roles a playbook includes). See
docs/testing.md §7 (always --offline: no Galaxy here)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))
BIN = Path(sys.executable).parent


def _env() -> dict:
    return dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", ANSIBLE_NOCOLOR="1",
                NO_COLOR="1", ANSIBLE_FORCE_COLOR="0")


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in {BIN} (pip install -e '.[test]')")
    return path


def test_there_are_playbooks():
    assert "provision.yml" in [p.name for p in PLAYBOOKS]


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_syntax_check(playbook):
    r = subprocess.run([str(_tool("ansible-playbook")), "-i", "localhost,", "--syntax-check", str(playbook)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"playbook: {playbook}" in r.stdout


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_ansible_lint(playbook):
    r = subprocess.run([str(_tool("ansible-lint")), "--offline", "--nocolor", "--format", "pep8",
                        str(playbook.relative_to(ROOT))],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"ansible-lint rc={r.returncode}\n{r.stdout}\n{r.stderr}"
