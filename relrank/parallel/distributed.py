"""Several processes (hosts) training one model with JAX's own multi-host runtime.

`initialize` starts `jax.distributed` from the flags `--coordinator_address`,
`--num_processes` and `--process_id` (the names of its arguments), or, without
them, from the environment of a SLURM job, an Open MPI launch or a Cloud TPU
pod slice (JAX's own cluster detection); a lone process needs nothing. Then
every process sees all devices of all processes, the trainer's mesh spans
them, each process feeds its devices its own slice of every batch, and only
process 0 writes logs, figures and summaries (checkpoints are written by all,
collectively, as Orbax does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time

import jax
import numpy as np

from relrank.errors import UserError

CLUSTER_ENVIRONMENTS = {  # a variable that marks each launcher, and the one that counts its processes
    "SLURM": ("SLURM_JOB_ID", "SLURM_NTASKS"),
    "Open MPI": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
}


def cluster_launcher() -> str | None:
    """The launcher whose environment describes several processes, if any (TPU pod slices included)."""
    for name, (marker, size) in CLUSTER_ENVIRONMENTS.items():
        if marker in os.environ and int(os.environ.get(size, "1") or 1) > 1:
            return name
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        return "TPU pod slice"
    return None


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--coordinator_address must be HOST:PORT with a port in 1-65535, got {address!r}")
    return host, int(port)


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Connect to the coordinator until it answers or `timeout_s` passes (then a one-line error).

    JAX aborts the process (no Python exception) when it cannot reach the coordinator, so
    processes other than 0 check it first.
    """
    host, port = _split_address(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise UserError(f"cannot reach the coordinator {address} within {timeout_s:g} s ({error.strerror or error});"
                                f" start process 0 there, or check --coordinator_address") from None
            time.sleep(0.5)


def _check_bindable(address: str) -> None:
    host, port = _split_address(address)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as error:
            raise UserError(f"process 0 cannot serve as coordinator on port {port} of {address}: "
                            f"{error.strerror or error}; choose another port") from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: float = 300) -> None:
    """Join the processes of one run (see the module docstring); a no-op for a lone process."""
    given = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    if any(v is not None for v in given.values()):
        missing = [f"--{k}" for k, v in given.items() if v is None]
        if missing:
            raise UserError(f"several processes need --coordinator_address, --num_processes and --process_id; "
                            f"missing {', '.join(missing)}")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise UserError(f"--process_id must be in [0, --num_processes={num_processes}), got {process_id}")
        _split_address(coordinator_address)
        if num_processes == 1:
            return
        if process_id == 0:
            _check_bindable(coordinator_address)
        else:
            _wait_for_coordinator(coordinator_address, timeout_s)
        jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                   initialization_timeout=int(timeout_s))
    elif cluster_launcher():
        jax.distributed.initialize(initialization_timeout=int(timeout_s))


def is_main() -> bool:
    """Whether this process writes the run's logs, figures and summary (process 0)."""
    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """Whether `flag` is true in any process (a collective: every process must call it at the same point)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (nothing to wait for in a lone process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def first_on_main(work, what: str):
    """`work()` in process 0 first, then in the others (e.g. preparing a dataset on a shared disk once)."""
    if is_main():
        result = work()
    barrier(f"{what}: process 0")
    if not is_main():
        result = work()
    barrier(f"{what}: every process")
    return result


def _field_hashes(config) -> tuple[list[str], np.ndarray]:
    fields = sorted(f.name for f in dataclasses.fields(config))
    digests = [hashlib.sha1(repr(getattr(config, name)).encode()).digest()[:4] for name in fields]
    return fields, np.array([int.from_bytes(d, "little") & 0x7FFFFFFF for d in digests], np.int32)


def check_same_config(config) -> None:
    """Refuse to train when the processes were given different configs, naming the first field that differs."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    fields, hashes = _field_hashes(config)
    every = np.asarray(multihost_utils.process_allgather(hashes))  # [processes, fields]
    differs = np.nonzero((every != every[0]).any(axis=0))[0]
    if len(differs):
        name = fields[differs[0]]
        others = [p for p in range(len(every)) if every[p, differs[0]] != every[0, differs[0]]]
        raise UserError(f"the processes disagree on the config field {name!r} (process {jax.process_index()} has "
                        f"{getattr(config, name)!r}; processes {others} differ from process 0); start every process "
                        f"with the same flags")
