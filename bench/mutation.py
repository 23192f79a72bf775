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
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Test files written to kill survivors (issue 32); a group runs those that exist (mutmut maps each
# test to the functions it reaches, so a file only costs time for the mutants it touches).
NEW_TESTS = {
    "asr": ["tests/test_language_prior_values.py", "tests/test_lid_loss_values.py",
            "tests/test_expert_bank_init_values.py", "tests/test_frozen_frontend_base_rate.py",
            "tests/test_smear_conditioning_checks.py", "tests/test_smear_switch_balance_values.py",
            "tests/test_traced_dispatch_values.py", "tests/test_hf_frontend_waveform_values.py",
            "tests/test_frozen_frontend_interctc.py", "tests/test_expert_linear_values.py",
            "tests/test_masked_batch_norm_affine.py", "tests/test_downsampler_too_short_error.py",
            "tests/test_moe_attention_projection_check.py"],
    "inference": [],
    "score": [],
}
# group -> (source dir copied to mutants/, glob of files to mutate, test files, deselected tests)
GROUPS = {
    "asr": (
        "espnet_plugins",
        ["espnet_plugins/asr/*"],
        ["tests/test_task_and_model.py", "tests/test_blr_moe.py", "tests/test_smear_projector.py",
         "tests/test_dispatch.py", "tests/test_masked_convolution.py", "tests/test_language_prior.py",
         "tests/test_frozen_frontend.py", "tests/test_faults.py", "tests/test_review_defects.py",
         "tests/test_lid_loss_norm.py", "tests/test_router_conv_norm.py", "tests/test_router_linear_skip.py",
         "tests/test_hf_encoder_frontend.py", "tests/test_export.py::test_traced_dispatch_plan_equals_dense_oracle",
         *NEW_TESTS["asr"]],
        # subprocess-only (nothing in-process to map to a mutant) and slow
        ["tests/test_task_and_model.py::test_print_config_cli_resolves_plugin_names",
         "tests/test_faults.py::test_training_skips_a_nan_batch_and_saves_only_finite_weights",
         "tests/test_faults.py::test_kill_minus_9_mid_epoch_then_rerun_resumes_from_the_last_checkpoint",
         "tests/test_review_defects.py::test_router_augmentation_config_applies_specaug_from_the_first_update",
         "tests/test_review_defects.py::test_smear_projector_with_downsample_rate_5_loads_decodes_and_exports"],
    ),
    "inference": (
        "espnet_plugins",
        ["espnet_plugins/inference/*"],
        ["tests/test_ctc_decoding.py", "tests/test_language_prior.py", "tests/test_lm_decoding.py", *NEW_TESTS["inference"]],
        [],
    ),
    "score": (
        "local",
        ["local/score.py"],
        ["tests/test_scoring.py", *NEW_TESTS["score"]],
        ["tests/test_scoring.py::test_cli_subprocess"],  # runs score.py in a subprocess: no mutant there
    ),
}
# Parts of the tree the tests read besides the source dir and tests/.
SNAPSHOT = ["espnet_plugins", "tests", "conf", "local", "bench", "egs/indic_synth/asr1/conf",
            "egs/indic_synth/asr1/local", "pytest.ini", "setup.py"]
SNAPSHOT_FILES = ["egs/indic_synth/asr1/run.sh", "egs/indic_synth/asr1/cmd.sh", "egs/indic_synth/asr1/path.sh"]
STATUS_RE = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")


def snapshot(group: str, workdir: Path, fresh: bool, parts=None) -> Path:
    """Copy the working tree's files into ``workdir/group`` (keeping mutmut's state)."""
    source, mutate, tests, deselect = GROUPS[group]
    gdir = workdir / group
    if fresh and gdir.exists():
        shutil.rmtree(gdir)
    gdir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results", ".mutmut", "data", "dump", "exp")
    for rel in parts or SNAPSHOT + SNAPSHOT_FILES:
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
    tests = [t for t in tests if (ROOT / t.split("::")[0]).exists()]
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
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", source], cwd=ROOT, capture_output=True,
                           text=True).stdout
    (gdir / "SOURCES").write_text(f"{head.strip()}{' + uncommitted changes' if dirty.strip() else ''}\n")
    return gdir


def refresh_tests(group: str, workdir: Path) -> Path:
    """Copy the new test files and the group's config into an existing snapshot, keeping its sources and
    the other tests (those of the working tree may already follow a refactor the sources do not have)."""
    sources = (workdir / group / "SOURCES").read_text()
    gdir = snapshot(group, workdir, fresh=False, parts=[t for t in NEW_TESTS[group] if (ROOT / t).exists()])
    (gdir / "SOURCES").write_text(sources)
    return gdir


_GENERATE = r"""
import json
from pathlib import Path
from mutmut.__main__ import (copy_also_copy_files, copy_src_dir, create_mutants, set_mutant_under_test,
                             setup_source_paths, store_lines_covered_by_tests)
from mutmut.configuration import config
config()
set_mutant_under_test("mutant_generation")
Path("mutants").mkdir(exist_ok=True)
copy_src_dir(); copy_also_copy_files(); setup_source_paths(); store_lines_covered_by_tests(); create_mutants(1)
out = {}
for meta in Path("mutants").rglob("*.meta"):
    out[str(meta)] = json.loads(meta.read_text()).get("exit_code_by_key", {})
print(json.dumps(out))
"""


def generate(gdir: Path) -> dict:
    """Generate the mutants of changed sources (as ``mutmut run`` would) -> {meta file: {mutant: exit code}}."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-c", _GENERATE], cwd=gdir, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"mutant generation in {gdir} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def sampled(name: str, digits: str) -> bool:
    """The deterministic sample: a mutant is in it when its per-function number ends in one of ``digits``."""
    return not digits or name.rsplit("_", 1)[-1][-1] in digits


def restore(gdir: Path, before: dict, ran) -> int:
    """Put back the verdicts a config change reset (mutmut forgets all results when the test selection
    changes), except for the mutants just run and 'no tests' (new test files may reach them now).
    Sound for killed mutants: more tests still kill them; survivors are put back only if not rerun."""
    ran, count = set(ran), 0
    for meta, codes in before.items():
        path = gdir / meta
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        now = data.get("exit_code_by_key", {})
        changed = False
        for key, code in codes.items():
            if code is not None and code != 33 and key in now and now[key] is None and key not in ran:
                now[key] = code
                changed = True
                count += 1
        if changed:
            path.write_text(json.dumps(data, indent=4))
    return count


_QUICK = r"""
import json, os, signal, sys
os.environ["MUTANT_UNDER_TEST"] = ""
sys.path.insert(0, os.getcwd())
import pytest
plan, timeout = json.loads(sys.argv[1]), int(sys.argv[2])
opts = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts="]
every = sorted({t for tests in plan.values() for t in tests})
rc = pytest.main([*every, *opts])
import espnet_plugins
assert os.path.abspath(espnet_plugins.__file__).startswith(os.getcwd()), espnet_plugins.__file__
if rc != 0:
    raise SystemExit(f"the tests fail without a mutant (exit {rc})")
out = {}
for name, tests in plan.items():
    pid = os.fork()
    if pid == 0:
        # a script of local/ is loaded by path as a top-level module (``score``, not ``local.score``)
        os.environ["MUTANT_UNDER_TEST"] = name.split(".", 1)[1] if name.startswith("local.") else name
        signal.alarm(timeout)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1), os.dup2(devnull, 2)
        os._exit(int(pytest.main([*tests, *opts])))
    _, status = os.waitpid(pid, 0)
    out[name] = os.waitstatus_to_exitcode(status)
    print(name, out[name], file=sys.stderr, flush=True)
print(json.dumps(out))
"""


def log_run(gdir: Path, text: str) -> None:
    with open(gdir / "RUNS", "a") as f:
        f.write(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: {text}\n")


def quick_retest(group: str, gdir: Path, names, specs, timeout: int = 300) -> dict:
    """Run fast tests against each mutant in ``names`` in forks of one process that imported everything
    once (mutmut's own run starts several pytest processes: too slow on a loaded 2-core machine).
    ``specs``: test ids, each optionally ``REGEX@test`` (only for mutants whose name matches REGEX);
    a mutant no spec applies to is not run. A mutant whose run fails is recorded as killed in
    mutmut's state; survivors stay."""
    pairs = [(spec.split("@", 1) if "@" in spec else (None, spec)) for spec in specs]
    plan = {n: [t for rx, t in pairs if rx is None or re.search(rx, n)] for n in names}
    plan = {n: t for n, t in plan.items() if t}
    tests = sorted({t for ts in plan.values() for t in ts})
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CI="")
    env.pop("PYTHONPATH", None)
    for t in {t.split("::")[0] for t in tests} & set(NEW_TESTS[group]):  # ours: into the snapshot too
        shutil.copy2(ROOT / t, gdir / "mutants" / t)
    with open(gdir.parent / f"{group}.quick.log", "a") as log:
        res = subprocess.run([sys.executable, "-c", _QUICK, json.dumps(plan), str(timeout)], cwd=gdir / "mutants", env=env, stdout=subprocess.PIPE, stderr=log,
                             text=True)
    if res.returncode != 0:
        raise SystemExit(f"quick retest in {gdir} failed (exit {res.returncode}); see {gdir.parent}/{group}.quick.log")
    verdicts = json.loads(res.stdout.splitlines()[-1])
    record_verdicts(gdir, verdicts, plan)
    return verdicts


def harvest(group: str, gdir: Path) -> dict:
    """The verdicts a stopped quick retest logged so far (``<mutant> <exit code>`` lines)."""
    verdicts = {}
    log = gdir.parent / f"{group}.quick.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        parts = line.split()
        if len(parts) == 2 and "__mutmut_" in parts[0] and parts[1].lstrip("-").isdigit():
            verdicts[parts[0]] = int(parts[1])
    record_verdicts(gdir, verdicts, {})
    return verdicts


def record_verdicts(gdir: Path, verdicts: dict, plan: dict) -> None:
    """Killed (any failure) or survived into mutmut's state; a run stopped by the wall-clock alarm
    (-14: the machine was busy, not necessarily the mutant) stays undecided."""
    verdicts = {n: rc for n, rc in verdicts.items() if rc != -signal.SIGALRM}
    record = gdir / "quick_retest.json"
    done = json.loads(record.read_text()) if record.exists() else {}
    for name, rc in verdicts.items():
        done[name] = {"exit": rc, "tests": plan.get(name, done.get(name, {}).get("tests"))}
    record.write_text(json.dumps(done, indent=1))
    for meta in (gdir / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        hit = [n for n in codes if n in verdicts]
        for n in hit:
            codes[n] = 0 if verdicts[n] == 0 else 1
        if hit:
            meta.write_text(json.dumps(data, indent=4))


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
             f"Report: `python bench/mutation.py --report_only --groups {' '.join(groups)}` "
             f"({datetime.date.today()}, 2-core AMD EPYC CPU shared with other jobs, no GPU; mutmut is "
             "deterministic: no seed); each group lists the runs that decided its mutants (`RUNS`). "
             "`killed` counts timeouts (mutmut's CPU-time limit; listed per group) and segfaults too "
             "(the mutant broke the run); `no tests`: nothing in the group's test files reaches the function (code tested "
             "elsewhere, e.g. ONNX tracing in tests/test_export.py, or CUDA-only), left out of the rate; "
             "`not run` = not reached before a run was stopped, or left out of a deterministic sample "
             "(`--sample_digits D`: only mutants whose per-function number ends in a digit of D are run). Survivors matching a rule of "
             "`bench/conf/mutation_equivalent.tsv` are counted by kind instead: `equiv.` (behaviour "
             "unchanged), `cpu-only` (changes only with a second device), `import-time` (mutmut 3 cannot "
             "switch it on), `message` (error-message text only). Kill rate = killed / (killed + "
             "survived + message); without message = killed / (killed + survived). What was run and what was "
             "not (samples, stopped runs, groups whose tests could not switch mutants on): "
             "`bench/results/mutation_notes.md`.", ""]
    survivors_md, classified = [], []
    for group in groups:
        gdir = workdir / group
        found = results_cache(gdir)
        undecided = [n for n, st in found.items() if st in ("survived", "suspicious")]
        shown = diffs(gdir, undecided)
        tests = GROUPS[group][2]
        took = f"{seconds[group] / 60:.1f} min" if group in seconds else "(report only)"
        sources = (gdir / "SOURCES").read_text().strip() if (gdir / "SOURCES").exists() else "?"
        runs = (gdir / "RUNS").read_text().strip().splitlines() if (gdir / "RUNS").exists() else []
        timeouts = sum(st == "timeout" for st in found.values())
        lines += [f"## {group}", "", f"Sources mutated: commit {sources}. Tests run against each mutant by mutmut "
                  f"(those of these files that reach its function): {', '.join('`' + t + '`' for t in tests)}. "
                  f"Last run: {took}. Timeouts counted as killed: {timeouts}.", ""]
        if runs:
            lines += ["Runs (later ones add to or override earlier verdicts):", ""] + [f"- {r}" for r in runs] + [""]
        lines += [
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
    parser.add_argument("--keep_sources", action="store_true",
                        help="refresh only tests/ in an existing snapshot (the mutated sources stay those of the "
                             "first snapshot, e.g. while the working tree is being refactored)")
    parser.add_argument("--sample_digits", default="",
                        help="run only the undecided mutants whose per-function number ends in one of these digits "
                             "(e.g. 37: a deterministic 1-in-5 sample); default: all")
    parser.add_argument("--retest_survivors", action="store_true",
                        help="also run the unclassified survivors of the last run again (after new tests)")
    parser.add_argument("--only_survivors", action="store_true", help="with --retest_survivors: no undecided ones")
    parser.add_argument("--retest_match", default="", help="run only mutants whose name matches this regex")
    parser.add_argument("--quick_harvest", action="store_true",
                        help="record the verdicts a stopped --quick run logged so far")
    parser.add_argument("--quick", nargs="+", default=None, metavar="TEST",
                        help="retest the unclassified survivors (and, with --sample_digits, the sampled undecided "
                             "mutants) against only these tests, in forks of one process (see quick_retest)")
    args = parser.parse_args(argv)
    seconds = {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    rules = load_equivalent(args.equivalent)
    for group in args.groups:
        if args.report_only:
            continue
        if args.quick_harvest:
            verdicts = harvest(group, args.workdir / group)
            log_run(args.workdir / group, f"quick retest stopped; {len(verdicts)} mutants decided "
                                          f"({sum(v != 0 for v in verdicts.values())} killed)")
            continue
        if args.quick:
            gdir = args.workdir / group
            found = {n: st for n, st in results(gdir).items() if st in ("survived", "suspicious")}
            shown = diffs(gdir, list(found))
            names = [n for n in found if classify(n, shown.get(n, ""), rules) is None]
            if args.sample_digits:  # and the sampled mutants no run decided yet
                codes = {k: c for meta in generate(gdir).values() for k, c in meta.items()}
                names += [n for n, c in codes.items() if c in (None, 33) and sampled(n, args.sample_digits)]
            names = sorted(n for n in set(names) if re.search(args.retest_match, n))
            start = time.time()
            verdicts = quick_retest(group, gdir, names, args.quick)
            seconds[group] = time.time() - start
            log_run(gdir, f"`{' '.join(sys.argv[1:])}`: quick retest of {len(verdicts)} mutants "
                          f"({sum(v != 0 for v in verdicts.values())} killed), {seconds[group] / 60:.0f} min")
            print(f"{group}: quick retest of {len(verdicts)} survivors: {sum(v != 0 for v in verdicts.values())} "
                  f"killed in {seconds[group] / 60:.1f} min")
            continue
        if args.keep_sources and (args.workdir / group / "setup.cfg").exists():
            gdir = refresh_tests(group, args.workdir)
        else:
            gdir = snapshot(group, args.workdir, args.fresh)
        before = generate(gdir)
        codes = {k: c for meta in before.values() for k, c in meta.items()}
        names = [] if args.only_survivors else [
            n for n, c in codes.items() if c in (None, 33) and sampled(n, args.sample_digits)]
        if args.retest_survivors:
            found = {n: st for n, st in results(gdir).items() if st in ("survived", "suspicious")}
            shown = diffs(gdir, list(found))
            names += [n for n in found if classify(n, shown.get(n, ""), rules) is None]
        names = sorted(n for n in set(names) if re.search(args.retest_match, n))
        if not names:
            print(f"{group}: nothing to run")
            continue
        print(f"{group}: running {len(names)} mutants", flush=True)
        with open(args.workdir / f"{group}.log", "a") as log:
            seconds[group] = run_group(group, gdir, args.max_children, log, names)
        kept = restore(gdir, before, names)
        log_run(gdir, f"`{' '.join(sys.argv[1:])}`: mutmut run of {len(names)} mutants, {seconds[group] / 60:.0f} min")
        print(f"{group}: mutmut run took {seconds[group] / 60:.1f} min, {kept} earlier verdicts kept "
              f"(log: {args.workdir / (group + '.log')})")
    text = report(args.groups, args.workdir, rules, seconds, args.out)
    print(text.split("## Survivors")[0])


if __name__ == "__main__":
    main()
