"""Signals (issue 8, part 2): real ``python train.py`` processes, real signals.

SIGINT, SIGTERM and SIGUSR1 sent mid-epoch each make the run write a resumable ``last.ckpt`` at
the next step boundary and exit non-zero (128 + signal number) with one line saying how to
resume; running that line resumes, and the last resume completes the run, identical to a run
that was never interrupted. Under Hydra's submitit launcher (local mode) the pre-emption signal
(SIGUSR1 here, as ``SUBMITIT_PREEMPT_SIGNAL=USR1``; submitit's default is SIGUSR2) checkpoints,
requeues the job and the requeued job resumes from its own ``last.ckpt``: what SLURM pre-emption
(``--signal=USR1@90``) does on a cluster.
"""
from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path

import pytest

from _robustness import (
    REFERENCE,
    assert_same_optimizer,
    assert_same_tensors,
    cli_env,
    cli_overrides,
    last_line,
    load_metrics,
    logged_steps,
    reference_run,
    shared_data_file,
    start_cli,
    strip_timing,
    wait_for,
)
from seispolarity.training import load_checkpoint

EPOCHS = REFERENCE["trainer.epochs"]  # ~50 steps per epoch: a signal lands mid-epoch


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return shared_data_file(tmp_path_factory)


def interrupt(command, signum: int, folder: Path, name: str, after_step: int) -> tuple[int, str, str]:
    """Start ``command``, wait until it has logged a step beyond ``after_step``, send ``signum``;
    return (exit code, stdout, stderr)."""
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    proc = start_cli(command, out, err)
    try:
        wait_for(lambda: any(s > after_step + 1 for s in logged_steps(out.read_text())), 120,
                 f"{name}: training steps after step {after_step}", proc)
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, out.read_text(), err.read_text()


def check_interrupted(code: int, stderr: str, signum: int, ckpt: Path, previous_step: int) -> tuple[dict, str]:
    name = signal.Signals(signum).name
    assert code == 128 + signum, f"exit code {code} after {name}:\n{stderr[-2000:]}"
    line = last_line(stderr)
    assert line.startswith(f"training stopped by {name}; checkpoint written to {ckpt}; resume with: python train.py "), line
    assert line.endswith(f"ckpt_path={ckpt}"), line
    assert "Traceback" not in stderr, stderr[-2000:]
    state = load_checkpoint(ckpt)
    assert state["global_step"] > previous_step, "no progress was checkpointed"
    assert 0 < state["batch_in_epoch"], "the checkpoint is not mid-epoch"
    assert not state["finished"]
    leftovers = [p.name for p in ckpt.parent.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    return state, line


def test_sigint_sigterm_sigusr1_then_resume_completes(data_file, tmp_path, tmp_path_factory):
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    args = cli_overrides(data_file, run_dir, **REFERENCE)

    command = args
    step, resumed_from, steps = 0, [], []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        name = signal.Signals(signum).name
        code, stdout, stderr = interrupt(command, signum, tmp_path, name, step)
        state, line = check_interrupted(code, stderr, signum, ckpt, step)
        if step:
            assert f"resumed from {ckpt} at epoch" in stdout, f"{name}: the run did not resume"
            assert logged_steps(stdout)[0] == step + 1, f"{name}: the resumed run did not continue at step {step + 1}"
        steps += [s for s in logged_steps(stdout) if s <= state["global_step"]]
        step = state["global_step"]
        resumed_from.append((name, state["epoch"], state["batch_in_epoch"]))
        # the one-line message is the command to run (a shell line: split it as a shell would)
        argv = shlex.split(line.split("resume with: ", 1)[1])
        assert argv[:2] == ["python", "train.py"]
        command = argv[2:]

    out, err = tmp_path / "final.out", tmp_path / "final.err"
    proc = start_cli(command, out, err)
    assert proc.wait(timeout=180) == 0, err.read_text()[-3000:]
    assert f"run folder: {run_dir}" in out.read_text()
    assert logged_steps(out.read_text())[0] == step + 1
    final = load_checkpoint(ckpt)
    assert final["finished"] and final["epoch"] == EPOCHS
    steps += logged_steps(out.read_text())
    assert steps == list(range(1, final["global_step"] + 1)), "steps were lost or repeated across the resumes"
    metrics = load_metrics(run_dir)
    assert metrics["summary"]["epochs"] == EPOCHS and len(metrics["history"]) == EPOCHS

    # identical to a run that was never interrupted
    straight = reference_run(tmp_path_factory)
    reference = load_checkpoint(straight / "checkpoints" / "last.ckpt")
    assert_same_tensors(reference["model_state_dict"], final["model_state_dict"], f"weights after {resumed_from}")
    assert_same_optimizer(reference["optimizer_state_dict"], final["optimizer_state_dict"])
    assert strip_timing(load_metrics(straight)["history"]) == strip_timing(metrics["history"])
    assert load_metrics(straight)["test"] == metrics["test"]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the submitit job process through /proc")
def test_submitit_preemption_signal_requeues_and_resumes(data_file, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=60"]
    args += [a for a in cli_overrides(data_file, tmp_path / "unused", **{**REFERENCE, "trainer.epochs": 1})
             if not a.startswith("hydra.run.dir=")]
    env = cli_env()
    env["SUBMITIT_PREEMPT_SIGNAL"] = "USR1"
    out, err = tmp_path / "sweep.out", tmp_path / "sweep.err"
    launcher = start_cli(args, out, err, env=env)
    job_log = sweep / "0" / "train.log"
    try:
        wait_for(lambda: job_log.is_file() and len(logged_steps(job_log.read_text())) > 2, 180,
                 "training steps in the submitit job", launcher)
        jobs = [p for p in _descendants(launcher.pid) if "submitit.core._submit" in _cmdline(p)]
        assert len(jobs) == 1, f"expected one submitit job process, found {jobs}"
        os.kill(jobs[0], signal.SIGUSR1)
        code = launcher.wait(timeout=240)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    text = job_log.read_text()
    assert code == 0, f"the sweep failed ({code}):\n{err.read_text()[-3000:]}\n{text[-3000:]}"
    assert "received SIGUSR1: stopping at this step boundary" in text
    assert "passing SIGUSR1 on to the handler installed before training" in text
    assert "requeued job: resuming from" in text, text[-3000:]
    ckpt = load_checkpoint(sweep / "0" / "checkpoints" / "last.ckpt")
    assert ckpt["finished"] and ckpt["epoch"] == 1
    # the pre-empted job and its requeued twin together log every step exactly once
    assert logged_steps(text) == list(range(1, ckpt["global_step"] + 1)), "steps were lost or repeated"
    assert load_metrics(sweep / "0")["summary"]["epochs"] == 1


def test_ctrl_c_in_a_sweep_stops_it_with_the_summary_so_far(data_file, tmp_path):
    """The interrupted job's row says how to resume it; the jobs after it never start."""
    sweep = tmp_path / "sweep"
    args = [a for a in cli_overrides(data_file, tmp_path / "unused", **REFERENCE) if not a.startswith("hydra.run.dir")]
    command = ["-m", *[a for a in args if not a.startswith("seed=")], "seed=3,4", f"hydra.sweep.dir={sweep}"]
    code, _, stderr = interrupt(command, signal.SIGINT, tmp_path, "sweep", after_step=1)
    assert code == 128 + signal.SIGINT and "Traceback" not in stderr, stderr[-3000:]
    ckpt = sweep / "0" / "checkpoints" / "last.ckpt"
    assert last_line(stderr) == (f"sweep stopped at job 0: the jobs after it did not run; every job's status so "
                                 f"far: {sweep / 'summary.md'}")
    summary = (sweep / "summary.md").read_text()
    assert f"training stopped by SIGINT; checkpoint written to {ckpt}; resume with: python train.py" in summary
    assert "| interrupted |" in summary
    assert not (sweep / "1").exists(), "a job after the interrupted one started"
    # the command in the job's row finishes it in its folder, and the sweep's summary then says so
    line = next(row for row in summary.splitlines() if "resume with: " in row)
    command = shlex.split(line.split("resume with: ", 1)[1].split(" |")[0])
    out, err = tmp_path / "resumed.out", tmp_path / "resumed.err"
    assert start_cli(command[2:], out, err).wait(timeout=240) == 0, err.read_text()[-3000:]
    assert f"run folder: {sweep / '0'}" in out.read_text()
    rows = (sweep / "summary.md").read_text()
    assert "| ok |" in rows and "| failed |" not in rows and not (sweep / "0" / "FAILED").exists()
