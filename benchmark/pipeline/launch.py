"""Many runs: one after another here, or as a Slurm job array through submitit (nothing home-made).

Several GPUs on one node are a different axis: ``torchrun --nproc-per-node N cli.py run ...`` runs one
configuration with DistributedDataParallel (methods.training joins the process group torchrun describes).
"""

from collections.abc import Sequence
from pathlib import Path

from benchmark.core.errors import XbenchError
from benchmark.pipeline.config import RunConfig
from benchmark.pipeline.results import RunResult
from benchmark.pipeline.runner import run

LAUNCHERS = ("local", "slurm", "submitit-local")  # submitit-local: the slurm path, run on this machine


def launch(configs: Sequence[RunConfig], *, launcher: str, runs_dir: Path, record: bool) -> list[RunResult]:
    if launcher not in LAUNCHERS:
        raise XbenchError(f"unknown launcher {launcher!r}; choose one of: {', '.join(LAUNCHERS)}")
    if launcher == "local":
        return [run(cfg, runs_dir=runs_dir, record=record) for cfg in configs]
    executor = _executor(launcher, runs_dir / "submitit")
    jobs = [executor.submit(run, cfg, runs_dir=runs_dir, record=record) for cfg in configs]
    return [job.result() for job in jobs]


def _executor(launcher: str, folder: Path):
    import submitit

    if launcher == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=60)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    # One GPU per run; adjust partition/account with SUBMITIT_* environment or by editing here.
    executor.update_parameters(timeout_min=24 * 60, gpus_per_node=1, tasks_per_node=1, cpus_per_task=8, name="xbench")
    return executor
