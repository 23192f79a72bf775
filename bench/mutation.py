#!/usr/bin/env python3
"""Mutation testing of the library with mutmut 3 (not part of the default test run: slow).

For each group (``asr``: ``espnet_plugins/asr/``; ``inference``:
``espnet_plugins/inference/``; ``score``: ``local/score.py``) a snapshot of the working
tree is copied into ``--workdir/<group>`` with a ``setup.cfg`` naming the files to
mutate and the fast test files that exercise them; ``mutmut run`` then works in that
snapshot's ``mutants/`` directory, so no mutant ever touches the working tree. mutmut
maps every test to the functions it calls and runs, for each mutant, only the tests
that reach the mutated function. Rerunning resumes: decided mutants keep their result
(``--fresh`` starts over).

The report (``--out``, default ``bench/results/mutation.md``) gives the kill rate per
file, counting as equivalent the mutants listed in ``bench/conf/mutation_equivalent.tsv``
(mutant name, tab, one-line reason: a mutant no test can kill because behaviour does
not change), and shows the diff of every other survivor.

Usage (2-core CPU; one worker, one thread; ~minutes per group)::

    . tools/activate.sh
    OMP_NUM_THREADS=1 python bench/mutation.py --groups asr inference score
"""
import argparse
import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# group -> (source dir copied to mutants/, glob of files to mutate, test files, deselected tests)
GROUPS = {
    "asr": (
        "espnet_plugins",
        ["espnet_plugins/asr/*"],
        ["tests/test_task_and_model.py", "tests/test_blr_moe.py", "tests/test_smear_projector.py",
         "tests/test_dispatch.py", "tests/test_masked_convolution.py", "tests/test_language_prior.py",
         "tests/test_frozen_frontend.py"],
        # subprocess-only (nothing in-process to map to a mutant) and slow
        ["tests/test_task_and_model.py::test_print_config_cli_resolves_plugin_names"],
    ),
    "inference": (
        "espnet_plugins",
        ["espnet_plugins/inference/*"],
        ["tests/test_ctc_decoding.py", "tests/test_language_prior.py", "tests/test_speech2text.py"],
        [],
    ),
    "score": (
        "local",
        ["local/score.py"],
        ["tests/test_scoring.py"],
        [],
    ),
}
# Parts of the tree the tests read besides the source dir and tests/.
SNAPSHOT = ["espnet_plugins", "tests", "conf", "local", "bench", "egs/indic_synth/asr1/conf",
            "egs/indic_synth/asr1/local", "pytest.ini", "setup.py"]
SNAPSHOT_FILES = ["egs/indic_synth/asr1/run.sh", "egs/indic_synth/asr1/cmd.sh", "egs/indic_synth/asr1/path.sh"]
STATUS_RE = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")


def snapshot(group: str, workdir: Path, fresh: bool) -> Path:
    """Copy the working tree's files into ``workdir/group`` (keeping mutmut's state)."""
    source, mutate, tests, deselect = GROUPS[group]
    gdir = workdir / group
    if fresh and gdir.exists():
        shutil.rmtree(gdir)
    gdir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results", ".mutmut", "data", "dump", "exp")
    for rel in SNAPSHOT + SNAPSHOT_FILES:
        src, dst = ROOT / rel, gdir / rel
        if not src.exists():
            continue
        if dst.is_dir():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(src, dst)
    # mutmut copies tests/ anew on every run and regenerates the mutants of a source file
    # newer than its copy (copy2 keeps mtimes, so unchanged files keep their results).
    tests = [t for t in tests if (ROOT / t).exists()]
    also = [p for p in SNAPSHOT + SNAPSHOT_FILES if p not in (source, "tests")]
    lines = ["[mutmut]", f"source_paths = {source}", "only_mutate ="]
    lines += [f"    {p}" for p in mutate]
    lines += ["also_copy ="] + [f"    {p}" for p in also]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -q"]
    for d in deselect:
        lines += ["    --deselect", f"    {d}"]
    lines += ["use_git_change_detection = false", ""]
    (gdir / "setup.cfg").write_text("\n".join(lines))
    return gdir


def run_group(group: str, gdir: Path, max_children: int, log, names=()) -> float:
    """``mutmut run`` (all undecided mutants, or exactly ``names``, e.g. to retest survivors)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CI="")
    env.pop("PYTHONPATH", None)  # the snapshot's mutants/ must be the only espnet_plugins on the path
    mutmut = shutil.which("mutmut") or str(Path(sys.executable).with_name("mutmut"))
    start = time.time()
    res = subprocess.run([mutmut, "run", "--max-children", str(max_children), *names], cwd=gdir, env=env,
                         stdout=log, stderr=subprocess.STDOUT)
    log.flush()
    if res.returncode != 0:
        print(f"mutmut run in {gdir} exited with {res.returncode}; see the log", file=sys.stderr)
    return time.time() - start


def results(gdir: Path):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    mutmut = shutil.which("mutmut") or str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=gdir, env=env, capture_output=True,
                         text=True).stdout
    found = {}
    for line in out.splitlines():
        m = STATUS_RE.match(line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


_DIFFS = r"""
import json, sys
from mutmut.configuration import config
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
config()
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = get_diff_for_mutant(name, path=find_mutant(name).path)
    except Exception as e:  # a mutant of a file changed since: no diff
        out[name] = f"(no diff: {e})"
print(json.dumps(out))
"""


def diffs(gdir: Path, names) -> dict:
    """The diff of each mutant (one process for all: mutmut's own ``show`` per mutant is slow)."""
    if not names:
        return {}
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-c", _DIFFS, *names], cwd=gdir, env=env, capture_output=True,
                         text=True).stdout
    raw = json.loads(out or "{}")
    return {n: "\n".join(line for line in d.splitlines() if line.startswith(("-", "+", "@"))
                         and not line.startswith(("---", "+++"))) for n, d in raw.items()}


def load_equivalent(path: Path):
    """Rules (kind, compiled regex, reason) from the tab-separated file (see its header)."""
    rules = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                kind, pattern, reason = line.split("\t", 2)
                rules.append((kind.strip(), re.compile(pattern), reason.strip()))
    return rules


def classify(name: str, diff: str, rules):
    """The first rule matching the mutant (its name and diff), or None."""
    for kind, regex, reason in rules:
        if regex.search(f"{name}\n{diff}"):
            return kind, reason
    return None


def module_of(name: str) -> str:
    return name.split(".x")[0] if ".x" in name else name.rsplit(".", 1)[0]


def report(groups, workdir: Path, rules, seconds, out: Path) -> str:
    lines = ["# Mutation testing (mutmut)", "",
             f"Command: `OMP_NUM_THREADS=1 python bench/mutation.py --groups {' '.join(groups)}` "
             f"({datetime.date.today()}, 2-core AMD EPYC CPU shared with other jobs, no GPU; mutmut is "
             "deterministic: no seed). `killed` counts timeouts and segfaults too (the mutant broke the "
             "run); `no tests`: nothing in the group's test files reaches the function (code tested "
             "elsewhere, e.g. ONNX tracing in tests/test_export.py, or CUDA-only), left out of the rate; "
             "`not run` = not reached before the run was stopped. Survivors matching a rule of "
             "`bench/conf/mutation_equivalent.tsv` are counted by kind instead: `equiv.` (behaviour "
             "unchanged), `cpu-only` (changes only with a second device), `import-time` (mutmut 3 cannot "
             "switch it on), `message` (error-message text only). Kill rate = killed / (killed + "
             "survived + message); without message = killed / (killed + survived).", ""]
    survivors_md, classified = [], []
    for group in groups:
        gdir = workdir / group
        found = results_cache(gdir)
        undecided = [n for n, st in found.items() if st in ("survived", "suspicious")]
        shown = diffs(gdir, undecided)
        tests = GROUPS[group][2]
        took = f"{seconds[group] / 60:.1f} min" if group in seconds else "(report only)"
        lines += [f"## {group}", "", f"Tests run against each mutant (those of these files that reach "
                  f"its function): {', '.join('`' + t + '`' for t in tests)}. This run: {took}.", "",
                  "| module | mutants | killed | survived | message | equiv. | cpu-only | import-time | no tests "
                  "| not run | kill rate | without message |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        by_module = collections.defaultdict(list)
        for name, status in found.items():
            by_module[module_of(name)].append((name, status))
        totals = collections.Counter()
        for module in sorted(by_module):
            c = collections.Counter()
            for name, status in by_module[module]:
                if status in ("killed", "timeout", "segfault", "caught by type check"):
                    c["killed"] += 1
                elif status == "no tests":
                    c["no tests"] += 1
                elif status in ("survived", "suspicious"):
                    rule = classify(name, shown.get(name, ""), rules)
                    if rule is None:
                        c["survived"] += 1
                        survivors_md.append((name, status, shown.get(name, "")))
                    else:
                        c[rule[0]] += 1
                        classified.append((name, rule, shown.get(name, "")))
                else:  # not checked (run stopped), skipped
                    c["not run"] += 1
            c["mutants"] = len(by_module[module])
            totals.update(c)
            lines.append(_row(module, c))
        lines += [_row("**total**", totals), ""]
    lines += ["## Survivors", "", "Each still needs a test (or a rule, if it is one of the kinds above).", ""]
    if not survivors_md:
        lines.append("None.")
    for name, status, diff in survivors_md:
        lines += [f"### `{name}` ({status})", "", "```diff", diff, "```", ""]
    lines += ["## Classified survivors", "", "| mutant | kind | reason | change |", "|---|---|---|---|"]
    for name, (kind, reason), diff in classified:
        change = " ".join(x.strip() for x in diff.splitlines() if x.startswith("+"))[:120].replace("|", "\\|")
        lines.append(f"| `{name.split('.')[-1]}` | {kind} | {reason} | `{change}` |")
    text = "\n".join(lines) + "\n"
    out.write_text(text, encoding="utf-8")
    return text


_cache = {}


def results_cache(gdir: Path):
    if gdir not in _cache:
        _cache[gdir] = results(gdir)
    return _cache[gdir]


def _row(module, c):
    decided = c["killed"] + c["survived"] + c["message"]
    strict = f"{100 * c['killed'] / decided:.1f} %" if decided else "n/a"
    loose = f"{100 * c['killed'] / (c['killed'] + c['survived']):.1f} %" if c["killed"] + c["survived"] else "n/a"
    return (f"| {module} | {c['mutants']} | {c['killed']} | {c['survived']} | {c['message']} | {c['equivalent']} | "
            f"{c['cpu-only']} | {c['import-time']} | {c['no tests']} | {c['not run']} | {strict} | {loose} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / ".mutmut",
                        help="snapshots and mutmut state (git-ignored)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mutation.md")
    parser.add_argument("--equivalent", type=Path, default=ROOT / "bench" / "conf" / "mutation_equivalent.tsv")
    parser.add_argument("--max_children", type=int, default=1, help="parallel mutant workers")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--report_only", action="store_true", help="rewrite the report from the last run")
    parser.add_argument("--retest_survivors", action="store_true",
                        help="run the survivors of the last run again (after new tests), not the undecided")
    parser.add_argument("--retest_match", default="", help="with --retest_survivors: only names matching this regex")
    args = parser.parse_args(argv)
    seconds = {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    for group in args.groups:
        if args.report_only:
            continue
        gdir = snapshot(group, args.workdir, args.fresh)
        names = ()
        if args.retest_survivors:
            rules = load_equivalent(args.equivalent)
            found = {n: st for n, st in results(gdir).items() if st in ("survived", "suspicious")}
            shown = diffs(gdir, list(found))
            names = tuple(n for n in found if classify(n, shown.get(n, ""), rules) is None
                          and re.search(args.retest_match, n))
            if not names:
                continue
        with open(args.workdir / f"{group}.log", "a") as log:
            seconds[group] = run_group(group, gdir, args.max_children, log, names)
        print(f"{group}: mutmut run took {seconds[group] / 60:.1f} min (log: {args.workdir / (group + '.log')})")
    text = report(args.groups, args.workdir, load_equivalent(args.equivalent), seconds, args.out)
    print(text.split("## Survivors")[0])


if __name__ == "__main__":
    main()
