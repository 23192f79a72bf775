"""Helpers shared by the tests: subprocesses that cannot hang the suite, external tools.

``run``: every command a test starts has a timeout. A command still running at its
timeout is killed with its whole process group (``run.sh`` and the jobs it started),
and the test fails naming the command and showing the end of its output, instead of
hanging until CI's own limit.

``require_tools`` / ``skip_or_fail``: a test that needs an external program (espeak-ng,
sox, festival, mp3 support) is skipped when it is missing on a developer machine, but
fails when the ``CI`` environment variable is set (``.ci/run`` sets it): there the
install step guarantees every tool, so a missing one is a broken install, not a reason
to skip.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from typing import Optional, Sequence

import pytest

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _tail(text, n: int = 3000) -> str:
    if text is None:
        return "(not captured)"
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-n:] if text else "(empty)"


def _show(cmd) -> str:
    return cmd if isinstance(cmd, str) else " ".join(shlex.quote(str(a)) for a in cmd)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and every process of its group (it was started in a new session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run(cmd, *, timeout: float, input=None, capture_output: bool = False, check: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` with a mandatory ``timeout`` (seconds).

    The command runs in its own session, so on timeout (or when the test is interrupted)
    its children die with it. A timeout fails the test with the command, the limit and
    the tail of its output.
    """
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    kwargs.setdefault("start_new_session", True)
    proc = subprocess.Popen(cmd, **kwargs)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out = err = None
        pytest.fail(f"{_show(cmd)}\ndid not finish within its {timeout:g} s timeout (a hang?); it was killed "
                    f"with its children.\n--- stdout (tail) ---\n{_tail(out)}\n--- stderr (tail) ---\n{_tail(err)}",
                    pytrace=False)
    except BaseException:  # KeyboardInterrupt, a failing test: leave no process behind
        kill_group(proc)
        proc.wait()
        raise
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        res.check_returncode()
    return res


def skip_or_fail(reason: str) -> None:
    """Skip the test for ``reason`` (a missing tool), or fail it when running in CI."""
    if CI:
        pytest.fail(f"{reason}; CI is set, where the install step (tools/install.sh) guarantees every tool, "
                    "so this is a broken install, not a reason to skip", pytrace=False)
    pytest.skip(reason)


def require_tools(*tools: str, why: Optional[str] = None) -> None:
    """Skip (locally) or fail (CI) unless every program in ``tools`` is on PATH."""
    missing: Sequence[str] = [t for t in tools if shutil.which(t) is None]
    if missing:
        skip_or_fail(f"{why or 'this test'} needs {', '.join(missing)} on PATH (tools/install.sh installs "
                     "the Debian packages)")
