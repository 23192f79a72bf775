"""tests/_helpers.py: a missing tool skips locally but fails in CI; a hung command fails
its test at its timeout, and nothing it started keeps running."""
import os
import sys
import time

import pytest
from _helpers import require_tools, run, skip_or_fail

import _helpers

NO_SUCH_TOOL = "no-such-tool-for-the-tests"


def test_missing_tool_skips_outside_ci(monkeypatch):
    monkeypatch.setattr(_helpers, "CI", False)
    with pytest.raises(pytest.skip.Exception, match=f"needs {NO_SUCH_TOOL} on PATH"):
        require_tools("sh", NO_SUCH_TOOL)
    require_tools("sh")  # present: nothing happens


def test_missing_tool_fails_in_ci(monkeypatch):
    monkeypatch.setattr(_helpers, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_tools(NO_SUCH_TOOL, why="synthesis")
    with pytest.raises(pytest.fail.Exception, match="mp3"):
        skip_or_fail("this sox cannot write mp3")


def test_ci_run_sets_ci(repo_root):
    """.ci/run (the CI entry point) sets CI, so CI runs get the failing behaviour."""
    assert "export CI=" in (repo_root / ".ci" / "run").read_text()


def test_every_subprocess_call_in_the_tests_has_a_timeout(repo_root):
    """A hang must end at a timeout, not at CI's 90-minute job limit."""
    import ast

    missing = []
    for path in sorted((repo_root / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            if (owner == "subprocess" and name in ("run", "call", "check_call", "check_output")) or \
                    (isinstance(f, ast.Name) and name == "run"):
                if not any(k.arg == "timeout" for k in node.keywords):
                    missing.append(f"{path.name}:{node.lineno}")
    assert not missing, f"subprocess calls without timeout=: {missing}"


def test_a_hung_command_fails_at_its_timeout_and_its_children_die(tmp_path):
    pid_file = tmp_path / "child.pid"
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"did not finish within its 1 s timeout") as e:
        run(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; echo started; wait"], capture_output=True, text=True,
            timeout=1)
    assert time.monotonic() - t0 < 30 and "started" in str(e.value)
    child = int(pid_file.read_text())
    for _ in range(100):  # the grandchild (sleep) was killed with the group
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the command's child {child} still runs")


def test_run_returns_like_subprocess_run():
    res = run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], input="ab",
              capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == "AB\n"
