"""Issue 20's hostile-input sweep (cases in tests/hostile_sweep.py, table in docs/testing.md).

Each case runs the real ``host`` CLI in a scratch folder of its own and fails on a traceback, a wrong
exit code, a message that does not name the file/field/option, or any file lost, changed or created
outside the results the command writes.
"""

import hostile_sweep as sweep
import pytest

COMMANDS = {
    "bench",
    "report",
    "report --html",
    "compare",
    "dataset",
    "query",
    "advise",
    "devices",
    "check",
    "meter",
    "zoo",
}


@pytest.fixture(scope="session")
def sweep_base(tmp_path_factory):
    """A real campaign (null backend) of two cells, copied into every case's scratch folder."""
    return sweep.make_base(tmp_path_factory.mktemp("sweep-base"))


def _marks(case):
    return [pytest.mark.slow] if case.command in ("bench", "check") else []


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in sweep.CASES])
def test_hostile_input(case, sweep_base, tmp_path):
    problems = sweep.run_case(case, tmp_path / "s", sweep_base)
    assert not problems, f"{case.id}: {case.hostile}\n" + "\n".join(problems)


def test_the_sweep_covers_every_command_with_40_cases():
    assert len(sweep.CASES) >= 40
    assert len({c.id for c in sweep.CASES}) == len(sweep.CASES)
    assert {c.command for c in sweep.CASES} == COMMANDS


def test_docs_table_is_generated_from_the_cases():
    """docs/testing.md holds exactly the table the cases give (`python tests/hostile_sweep.py --write`)."""
    assert sweep.doc_table(sweep.DOC.read_text()) == sweep.table()
