"""`host provision` / `host power-mode` plumbing (host/lab/ansible.py, host/cli/provision.py):
real ansible-runner + ansible-playbook against loopback sshd boards, with small stand-in
playbooks (EDGEGAUGE_PLAYBOOKS) so each behaviour is checked on its own: the recap, a
failure naming host, task and message, an unreachable board, a changed host key refused,
the reported power state, the selection and --limit, artifacts kept and rotated.
The real playbooks are run in tests/test_power_mode.py and tests/test_provision.py."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli import app
from host.errors import AnsibleError, PlaybookFailed
from host.lab.ansible import raise_for_failures, run_playbook

runner = CliRunner()
# No ControlPersist masters left behind by the tests (docs/testing.md §3).
QUIET_SSH = {"ANSIBLE_SSH_ARGS": "-o ControlMaster=no"}

DEMO = """\
- name: Stand-in provisioning
  hosts: all
  gather_facts: false
  tasks:
    - name: Create the marker
      ansible.builtin.command: touch {{ workdir }}/provisioned
      args:
        creates: "{{ workdir }}/provisioned"
    - name: Break b2
      ansible.builtin.fail:
        msg: b2 is broken on purpose
      when: inventory_hostname == 'b2'
"""

POWER = """\
- name: Stand-in power modes
  hosts: all
  gather_facts: false
  tasks:
    - name: Tune
      ansible.builtin.copy:
        content: "{{ power_mode_name | default('DEFAULT') }}\\n"
        dest: "{{ workdir }}/mode"
        mode: "0644"
      tags: [tune]
    - name: Read the mode
      ansible.builtin.slurp:
        src: "{{ workdir }}/mode"
      register: mode_file
      failed_when: false
      tags: [show, tune, reset]
    - name: Edgegauge power state
      ansible.builtin.debug:
        var: edgegauge_power_state
      vars:
        edgegauge_power_state:
          schema: edgegauge.power_state/1
          family: arm_cpu
          mode_key: "governor={{ (mode_file.content | default('LQ==') | b64decode).strip() }}"
          errors: []
      tags: [show, tune, reset]
"""


@pytest.fixture
def playbooks(tmp_path, monkeypatch):
    d = tmp_path / "playbooks"
    d.mkdir()
    (d / "provision.yml").write_text(DEMO)
    (d / "power_mode.yml").write_text(POWER)
    monkeypatch.setenv("EDGEGAUGE_PLAYBOOKS", str(d))
    for key, value in QUIET_SSH.items():
        monkeypatch.setenv(key, value)
    return d


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def inventory(boards, tmp_path, names=("b1", "b2"), **extra) -> Path:
    return boards.write_inventory(tmp_path / "lab.ini", list(names),
                                  ansible_python_interpreter="/usr/bin/python3", **extra)


def test_provision_recap_and_a_failure_naming_host_task_and_message(boards, playbooks, tmp_path):
    inv = inventory(boards, tmp_path)
    art = tmp_path / "art"
    res = host("provision", "-i", inv, "--all", "--artifacts", art)
    assert res.exit_code == 1, res.output
    assert "b2: task 'Break b2' failed: b2 is broken on purpose" in res.stderr
    assert "host provision: failed" in res.stdout and "b1" in res.stdout
    assert (boards.workdir("b1") / "provisioned").exists()
    runs = list((art / "artifacts").iterdir())
    assert len(runs) == 1 and (runs[0] / "stdout").read_text().count("PLAY RECAP") == 1
    assert str(runs[0]) in res.stderr  # the failure says where the log is

    # Only b1 (selection by --device): succeeds; the marker exists, so nothing changes.
    res = host("provision", "-i", inv, "--device", "b1", "--artifacts", art, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "successful" and list(doc["recap"]) == ["b1"]
    assert doc["recap"]["b1"]["changed"] == 0 and doc["recap"]["b1"]["failed"] == 0


def test_limit_pattern_intersects_the_selection_and_local_is_refused(boards, playbooks, tmp_path):
    inv = inventory(boards, tmp_path)
    res = host("provision", "-i", inv, "--all", "--limit", "!b2", "--artifacts", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.output
    assert list(json.loads(res.stdout)["recap"]) == ["b1"]
    res = host("provision", "--device", "local")
    assert res.exit_code == 2 and "playbooks run on boards only" in res.stderr


def test_unreachable_board_and_changed_host_key_are_failures(boards, playbooks, tmp_path):
    wrong = boards.wrong_known_hosts(tmp_path / "kh")
    inv = inventory(boards, tmp_path, names=("b1", "b3"),
                    ansible_ssh_common_args=f"-o UserKnownHostsFile={wrong} -o StrictHostKeyChecking=yes")
    run = run_playbook("provision.yml", inv, limit="b1", private_dir=tmp_path / "a")
    assert run.status == "failed" and run.recap["b1"].unreachable == 1
    assert run.failures[0].unreachable and "Host key verification failed" in run.failures[0].message
    boards.stop("b3")
    inv = inventory(boards, tmp_path, names=("b3",))
    run = run_playbook("provision.yml", inv, private_dir=tmp_path / "a", rotate=2)
    with pytest.raises(PlaybookFailed, match=r"b3: task 'Create the marker' unreachable: .*refused"):
        raise_for_failures(run, what="provision")
    assert len(list((tmp_path / "a" / "artifacts").iterdir())) == 2  # rotated to the last 2 runs


def test_provision_check_mode_reports_what_would_change_and_changes_nothing(boards, playbooks, tmp_path):
    inv = inventory(boards, tmp_path, names=("b1",))
    marker = boards.workdir("b1") / "provisioned"
    marker.unlink(missing_ok=True)
    res = host("provision", "-i", inv, "--all", "--check", "--artifacts", tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert "check mode: nothing was changed" in res.stdout and "would change" in res.stdout
    assert not marker.exists()
    res = host("provision", "-i", inv, "--all", "--check", "--artifacts", tmp_path / "a", "--json")
    doc = json.loads(res.stdout)
    assert doc["check"] is True and doc["recap"]["b1"]["changed"] == 1 and not marker.exists()
    res = host("provision", "-i", inv, "--all", "--artifacts", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # the same artifacts folder: check mode did not stick
    assert doc["check"] is False and doc["recap"]["b1"]["changed"] == 1 and marker.exists()


BECOME = """\
- name: Stand-in provisioning that needs root
  hosts: all
  gather_facts: false
  tasks:
    - name: Write as root
      ansible.builtin.command: touch {{ workdir }}/as-root
      become: true
      become_user: nobody  # Ansible skips become when the user would not change (root here)
      changed_when: true
"""

# Stands in for the board's sudo: the options Ansible's become plugin passes, -n (refuse at
# once: no password to give), else the prompt on stderr (-S -p PROMPT), one line of stdin
# checked against the password, then the command.
FAKE_SUDO = """\
#!/bin/sh
prompt="Password:"; nonint=""
while [ $# -gt 0 ]; do
  case "$1" in
    -p) prompt="$2"; shift 2;;
    -n) nonint=1; shift;;
    -u) shift 2;;
    --) shift; break;;
    -*) shift;;
    *) break;;
  esac
done
if [ -n "$nonint" ]; then  # Ansible passes -n when it has no password to give
  echo "sudo: a password is required" >&2
  exit 1
fi
printf '%s' "$prompt" >&2
IFS= read -r pw || pw=""
if [ "$pw" != "$(cat "$(dirname "$0")/password")" ]; then
  printf '\nSorry, try again.\nsudo: 1 incorrect password attempt\n' >&2
  exit 1
fi
exec "$@"
"""


@pytest.fixture
def sudo_board(boards, tmp_path):
    """b1 with a sudo that wants the password "s3cret 2" (the tests log in as root, so the
    roles' ``become`` goes through it)."""
    bindir = tmp_path / "sudo-bin"
    bindir.mkdir()
    (bindir / "sudo").write_text(FAKE_SUDO)
    (bindir / "sudo").chmod(0o755)
    (bindir / "password").write_text("s3cret 2\n")
    boards.set_env("b1", {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin"})
    yield boards
    boards.set_env("b1", {})


def test_a_sudo_password_is_asked_once_answered_and_never_stored(sudo_board, playbooks, tmp_path):
    (playbooks / "provision.yml").write_text(BECOME)
    inv = inventory(sudo_board, tmp_path, names=("b1",))
    done = sudo_board.workdir("b1") / "as-root"
    done.unlink(missing_ok=True)
    art = ["--artifacts", tmp_path / "a"]
    res = host("provision", "-i", inv, "--all", *art)  # no password: says which option helps
    assert res.exit_code == 1 and not done.exists()
    assert "b1: task 'Write as root' failed: " in res.output and "Missing sudo password" in res.output
    assert "--ask-become-pass" in res.output
    wrong = runner.invoke(app, [str(a) for a in ("provision", "-i", inv, "--all", "-K", *art)],
                          input="nope\n", env={"COLUMNS": "250"})
    assert wrong.exit_code == 1 and "incorrect sudo password" in wrong.output.lower(), wrong.output
    res = runner.invoke(app, [str(a) for a in ("provision", "-i", inv, "--all", "-K", *art, "--json")],
                        input="s3cret 2\n", env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert done.exists()
    done.unlink()
    pw_file = tmp_path / "become.txt"
    pw_file.write_text("s3cret 2\n")
    res = host("provision", "-i", inv, "--all", "--become-password-file", pw_file, *art)
    assert res.exit_code == 0, res.output
    assert done.exists()
    for path in (tmp_path / "a").rglob("*"):  # in no artifact, env file or event
        assert not path.is_file() or b"s3cret" not in path.read_bytes(), path
    res = host("provision", "-i", inv, "--all", "-K", "--become-password-file", pw_file, *art)
    assert res.exit_code == 2 and "not both" in res.output


def test_power_mode_tune_show_reset_report_the_state_per_host(boards, playbooks, tmp_path):
    inv = inventory(boards, tmp_path, names=("b1",))
    art = ["--artifacts", tmp_path / "a"]
    res = host("power-mode", "tune", "-i", inv, "--all", "--mode", "performance", *art, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["reports"]["b1"]["mode_key"] == "governor=performance"
    assert doc["recap"]["b1"]["changed"] == 1
    res = host("power-mode", "show", "-i", inv, "--all", *art)
    assert res.exit_code == 0, res.output
    assert "governor=performance" in res.stdout and "power state" in res.stdout
    res = host("power-mode", "show", "-i", inv, "--all", *art, "--json")
    assert json.loads(res.stdout)["recap"]["b1"]["changed"] == 0  # show changes nothing
    # every run gets only its own options: ansible-runner would keep the first run's
    # extravars in <artifacts>/env/extravars and pass them to every later run
    res = host("power-mode", "tune", "-i", inv, "--all", *art, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["reports"]["b1"]["mode_key"] == "governor=DEFAULT"
    assert not (tmp_path / "a" / "env").exists()


def test_missing_playbook_is_a_typed_error(tmp_path, monkeypatch, boards):
    monkeypatch.setenv("EDGEGAUGE_PLAYBOOKS", str(tmp_path))
    with pytest.raises(AnsibleError, match="provision.yml not found"):
        run_playbook("provision.yml", inventory(boards, tmp_path), private_dir=tmp_path / "a")
