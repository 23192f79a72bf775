"""Cluster launch, dry run: the Slurm commands cmd.sh / run.sh would submit.

``local/slurm.pl`` (= ``local/slurm_jobs.sh``) with ``slurm_dry_run=true`` prints one line
per job instead of submitting it. Checked: the resource mapping of ``conf/slurm.conf``
(CPU partition for CPU jobs, GPU partition + ``--gres=gpu:N`` for ``--gpu N``), job arrays,
run.sh's GPU training (ESPnet's launcher options ``--ngpu N --multiprocessing_distributed
true`` in one job with N GPUs) and its multi-node training through ``espnet2.bin.launch``
(an allocation of ``--nodes K`` with one task per node, ``--dist_launcher slurm`` and a
shared-file rendezvous in the experiment dir).
"""
import os
import shlex
from pathlib import Path

from _helpers import run

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "indic_synth" / "asr1"


def _env(**extra):
    return dict(os.environ, slurm_dry_run="true", cmd_backend="slurm", **extra)


def _slurm(*args, **env):
    res = run([str(RECIPE / "local" / "slurm.pl"), "--config", "conf/slurm.conf", *args], cwd=RECIPE,
              env=_env(**env), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [shlex.split(line) for line in res.stdout.splitlines()]


def _opts(words):
    """The Slurm options of a submitted line: the words up to the job's own command."""
    return words[: words.index("--ntasks=1") if "--ntasks=1" in words else words.index("srun", 1)]


def test_cpu_job_array_goes_to_the_cpu_partition_one_step_per_job():
    lines = _slurm("JOB=1:3", "exp/log.JOB", "python", "x.py", "--part", "JOB")
    assert len(lines) == 3
    for j, words in enumerate(lines, 1):
        assert words[:2] == ["srun", "--export=ALL"]
        opts = _opts(words)
        assert "-p" in opts and opts[opts.index("-p") + 1] == "cpu" and not any("gres" in w for w in opts)
        assert words[words.index("--ntasks=1") + 1:] == ["python", "x.py", "--part", str(j), ">", f"exp/log.{j}"]


def test_gpu_job_gets_the_gpu_partition_gres_and_site_options():
    (words,) = _slurm("--gpu", "2", "--mem", "8G", "--num_threads", "4", "exp/train.log", "python", "t.py",
                      SLURM_OPTS="-A myproject")
    opts = _opts(words)
    assert opts[opts.index("-p") + 1] == "gpu" and "--gres=gpu:2" in opts
    assert opts[opts.index("--mem-per-cpu") + 1] == "8G" and opts[opts.index("--cpus-per-task") + 1] == "4"
    assert opts[-2:] == ["-A", "myproject"] and "--time" in opts


def test_unmapped_option_value_fails_naming_it(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("command srun\noption gpu=0 -p cpu\n")
    res = run([str(RECIPE / "local" / "slurm.pl"), "--config", str(conf), "--gpu", "1", "log", "true"],
              cwd=RECIPE, env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "maps no option gpu=1" in res.stderr


def _run_sh(tmp_path, *args):
    res = run(["./run.sh", "--stage", "6", "--stop_stage", "6", "--expdir", str(tmp_path / "exp"),
               "--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump"), *args],
              cwd=RECIPE, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [shlex.split(x) for x in res.stdout.splitlines() if x.startswith(("srun ", "salloc "))]
    assert len(lines) == 1, res.stdout
    return lines[0]


def test_run_sh_gpu_training_is_one_job_with_n_gpus_and_espnets_ddp_options(tmp_path):
    words = _run_sh(tmp_path, "--ngpu", "2")
    opts = _opts(words)
    assert words[0] == "srun" and "--gres=gpu:2" in opts and opts[opts.index("-p") + 1] == "gpu"
    cmd = words[words.index("--ntasks=1") + 1:]
    assert cmd[:3] == ["python", "-m", "espnet_plugins.bin.asr_train"]
    assert cmd[cmd.index("--ngpu") + 1] == "2" and cmd[cmd.index("--multiprocessing_distributed") + 1] == "true"
    assert cmd[-2:] == [">", str(tmp_path / "exp" / "asr_dense_conformer" / "train.log")]


def test_run_sh_cpu_training_stays_on_the_cpu_partition(tmp_path):
    words = _run_sh(tmp_path)
    opts = _opts(words)
    assert opts[opts.index("-p") + 1] == "cpu" and not any("gres" in w for w in opts)
    assert "--multiprocessing_distributed" not in words and words[words.index("--ngpu") + 1] == "0"


def test_run_sh_multi_node_goes_through_espnets_launcher(tmp_path):
    words = _run_sh(tmp_path, "--ngpu", "4", "--num_nodes", "2")
    assert words[0] == "salloc"
    opts = words[: words.index("srun")]
    assert opts[opts.index("--nodes") + 1] == "2" and opts[opts.index("--ntasks-per-node") + 1] == "1"
    assert "--gres=gpu:4" in opts
    cmd = words[words.index("srun"):]
    assert cmd[:2] == ["srun", "--export=ALL"] and cmd[2:5] == ["python", "-m", "espnet_plugins.bin.asr_train"]
    # added by espnet2.bin.launch: ESPnet's DDP over Slurm, one process per GPU on each node
    assert cmd[cmd.index("--ngpu") + 1] == "4" and cmd.count("--ngpu") == 1
    assert cmd[cmd.index("--multiprocessing_distributed") + 1] == "true"
    assert cmd[cmd.index("--dist_launcher") + 1] == "slurm"
    init = cmd[cmd.index("--dist_init_method") + 1]
    assert init.startswith(f"file://{tmp_path / 'exp' / 'asr_dense_conformer' / '.dist_init_'}")


def test_local_backend_refuses_several_nodes(tmp_path):
    res = run([str(RECIPE / "local" / "run_jobs.sh"), "--gpu", "1", "--num_nodes", "2", str(tmp_path / "log"), "true"],
              capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "needs a cluster" in res.stderr
    # the resource options alone are accepted and ignored, as by Kaldi's run.pl
    res = run([str(RECIPE / "local" / "run_jobs.sh"), "--gpu", "1", "--mem", "4G", str(tmp_path / "log"), "true"],
              capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
