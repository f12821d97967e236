"""Process-group set-up for DistributedDataParallel under torchrun (NCCL on GPUs, gloo on CPUs)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def export_submitit_env() -> bool:
    """Inside a submitit job with several tasks (``hydra.launcher.tasks_per_node=N``), export the
    env:// variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) torchrun would set.
    Returns True when it did. CUDA_VISIBLE_DEVICES is left alone (each rank picks cuda:LOCAL_RANK)."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return False
    try:
        import submitit
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return False
    try:
        if submitit.JobEnvironment().num_tasks < 2:
            return False
    except RuntimeError:  # not actually inside a submitit job
        return False
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True


def agree_across_ranks(key: str, value: str, timeout_s: float = 300.0) -> str:
    """The one value all ranks of this torchrun job agree on for ``key``: the first one offered.

    Uses the TCP store that torchrun's agent hosts at MASTER_ADDR:MASTER_PORT, so it needs no process
    group (it runs before Hydra composes the config). Keys are scoped to the rendezvous id and the
    restart count: a restarted worker group agrees on a new value. Raises RuntimeError when the
    workers were not started by torchrun (no agent store).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in os.environ:
        raise RuntimeError("not started by torchrun (no TORCHELASTIC_USE_AGENT_STORE=True)")
    from datetime import timedelta

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timedelta(seconds=timeout_s))
    run_id, restart = os.environ.get("TORCHELASTIC_RUN_ID", ""), os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    scope = f"seispolarity/{run_id}/{restart}"
    return store.compare_set(f"{scope}/{key}", "", value).decode()


def launch_problem(mode: bool | str) -> str | None:
    """Why ``distributed=True`` cannot run in this process (not started by torchrun), or None."""
    if mode is True and "WORLD_SIZE" not in os.environ:
        return ("distributed training asked for (trainer=ddp) but WORLD_SIZE is not set: this process was not "
                "started by torchrun; launch with: torchrun --nproc_per_node=N train.py trainer=ddp")
    return None


def init_distributed(mode: bool | str = "auto", device: str = "cpu") -> DistContext:
    """Join the process group torchrun describes in the environment, once.

    ``mode``: "auto" joins when WORLD_SIZE > 1; True requires it; False never joins.
    """
    if mode is False or mode == "off":
        return DistContext()
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    export_submitit_env()
    if not launched_by_torchrun():
        problem = launch_problem(mode)
        if problem:
            raise RuntimeError(problem)
        return DistContext()  # WORLD_SIZE=1 (torchrun --nproc_per_node=1): one process, no DDP
    use_cuda = device.split(":")[0] in ("cuda", "auto") and torch.cuda.is_available()
    if use_cuda:  # bind this rank to its GPU before NCCL starts (else every rank uses cuda:0)
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, ctx: DistContext, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on at least one (a stop request, a NaN ...);
    ``device`` is where the collective runs (the training device under NCCL)."""
    if not ctx.enabled:
        return bool(flag)
    votes = torch.tensor([1.0 if flag else 0.0], device=device)
    all_reduce_sum(votes, ctx)
    return bool(votes.item() > 0)


def broadcast_object(obj, ctx: DistContext):
    if not ctx.enabled:
        return obj
    objects = [obj]  # broadcast_object_list fills the list in place on the other ranks
    dist.broadcast_object_list(objects, src=0)
    return objects[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
