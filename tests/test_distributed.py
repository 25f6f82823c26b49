"""Several processes: two CPU processes on localhost train exactly like one process with two devices."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO

COMMON = ("--epochs=1", "--batch_pairs=8", "--log_every_steps=4", "--checkpoint_every_steps=6")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(processes: int, *args, env=None) -> list[subprocess.CompletedProcess]:
    """Start `processes` train.py processes joined by a coordinator on localhost; wait for all."""
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    started = [
        subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *args,
                          f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
                          f"--process_id={k}", "--coordinator_timeout=60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        for k in range(processes)
    ]
    results = []
    for p in started:
        out, err = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def final_params(workdir: str) -> tuple[int, list[np.ndarray]]:
    from relrank.run.checkpoints import Checkpoints, abstract
    from relrank.model.network import param_shapes

    checkpoints = Checkpoints(workdir, read_only=True)
    step = checkpoints.latest_step()
    config = checkpoints.restore_config(step)
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    params = checkpoints.restore_params(step, abstract(param_shapes(config), one_device))
    checkpoints.close()
    return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


def test_two_processes_streaming_interrupted_and_resumed_match_one_process_with_two_devices(data_dir, tmp_path):
    """Two processes (streaming, 1 grain worker each) stop at step 6 and resume to 12; one process with two
    devices and the in-memory table trains 12 steps: the same parameters, the same logged losses."""
    two = str(tmp_path / "two")
    streaming = ("--input_pipeline=streaming", "--data_workers=1", "--stop_after_steps=6")
    for part in ("first", "resumed"):
        results = launch(2, f"--data_dir={data_dir}", f"--workdir={two}", *COMMON, *streaming)
        for k, result in enumerate(results):
            assert result.returncode == 0, f"{part}, process {k}: {result.stderr[-3000:]}"
    one = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"--data_dir={data_dir}",
                          f"--workdir={tmp_path / 'one'}", *COMMON, "--stop_after_steps=12"], capture_output=True,
                         text=True, cwd=REPO,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert one.returncode == 0, one.stderr[-3000:]

    summary = json.load(open(os.path.join(two, "summary.json")))
    assert summary["input_pipeline"] == "streaming" and summary["resumed_from_step"] == 6
    step_two, params_two = final_params(two)
    step_one, params_one = final_params(str(tmp_path / "one"))
    assert step_two == step_one == 12
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(params_two, params_one))
    assert diff <= 1e-5, diff
    assert max(float(np.max(np.abs(a))) for a in params_one) > 0

    def logged(run):
        return [(row["step"], round(row["loss"], 4)) for row in map(json.loads, (tmp_path / run / "metrics.jsonl").open())]

    # Process 0 alone logs, once per interval; process 1 prints no result.
    assert logged("two") == logged("one") and len(logged("two")) == len(set(logged("two")))
    assert "synthetic/brightness:" in results[0].stdout and "synthetic/brightness:" not in results[1].stdout


def test_processes_that_disagree_on_the_config_refuse_naming_the_field(data_dir, tmp_path):
    port_args = (f"--data_dir={data_dir}", f"--workdir={tmp_path / 'run'}", *COMMON)
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *port_args, f"--seed={k}",
                               f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={k}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 2, err[-2000:]
        assert "disagree on the config field 'seed'" in err.strip().splitlines()[-1]


def test_unreachable_coordinator_is_a_one_line_error_after_a_bounded_wait(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"--workdir={tmp_path / 'run'}",
                             f"--coordinator_address=localhost:{free_port()}", "--num_processes=2", "--process_id=1",
                             "--coordinator_timeout=2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "cannot reach the coordinator localhost:" in result.stderr and "within 2 s" in result.stderr


@pytest.mark.parametrize("env, launcher", [
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, "SLURM"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),  # one task: a lone process
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
    ({"TPU_WORKER_HOSTNAMES": "t0,t1"}, "TPU pod slice"),
    ({"TPU_WORKER_HOSTNAMES": "t0"}, None),
    ({}, None),
])
def test_cluster_environments_that_start_several_processes_are_recognised(monkeypatch, env, launcher):
    from relrank.parallel.distributed import cluster_launcher

    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cluster_launcher() == launcher


def test_incomplete_or_inconsistent_process_flags_are_refused():
    from relrank.parallel.distributed import initialize
    from relrank.errors import UserError

    with pytest.raises(UserError, match="missing --num_processes, --process_id"):
        initialize("localhost:1234")
    with pytest.raises(UserError, match=r"--process_id must be in \[0, --num_processes=2\), got 2"):
        initialize("localhost:1234", 2, 2)
    with pytest.raises(UserError, match="--coordinator_address must be HOST:PORT"):
        initialize("localhost", 2, 1, timeout_s=1)


def test_sigterm_to_one_of_two_processes_stops_both_with_one_checkpoint(data_dir, tmp_path):
    """The signalled process tells the other at their next agreement; both save the same step and say so."""
    import signal
    import time

    workdir = tmp_path / "run"
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    processes = [subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), f"--data_dir={data_dir}",
                                   f"--workdir={workdir}", "--epochs=5", "--batch_pairs=8", "--log_every_steps=10",
                                   f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={k}",
                                   "--coordinator_timeout=60"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
                 for k in range(2)]
    deadline = time.time() + 240
    while not (workdir / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.5)
    assert (workdir / "metrics.jsonl").exists(), processes[0].communicate(timeout=60)[1][-3000:]
    processes[1].send_signal(signal.SIGTERM)
    sent = time.time()
    outputs = [p.communicate(timeout=120) for p in processes]
    assert time.time() - sent < 60
    for k, (p, (_, err)) in enumerate(zip(processes, outputs)):
        assert p.returncode == 130, f"process {k}: {err[-3000:]}"
        assert "Traceback" not in err
    last = [err.strip().splitlines()[-1] for _, err in outputs]
    assert last[1].startswith("error: interrupted; last checkpoint: step ")
    assert last[0].startswith("error: stopped: another process of this run was interrupted; last checkpoint: step ")
    step = int(last[1].split("step ")[1].split(";")[0])
    assert step % 10 == 0 and f"step {step};" in last[0]
    assert final_params(str(workdir))[0] == step
