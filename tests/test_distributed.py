"""Several processes (torchrun's DistributedDataParallel), here two CPU processes on the gloo backend."""

import dataclasses
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from methods.xraygan import XRayGAN
from tests.tiny import tiny_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_rank(rank: int, world_size: int, port: int, vocab, train, out_dir) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    torch.set_num_threads(1)
    cfg = dataclasses.replace(
        tiny_model("xraygan"),
        epochs=(1, 1),
        warmup_epochs=1,
        batch_sizes=(16, 16),
        vcn=dataclasses.replace(tiny_model("xraygan").vcn, epochs=1),
    )
    method = XRayGAN(cfg, vocab, image_size=64, device="cpu", seed=5)
    try:
        method.fit(train, None, out_dir / "run")
        torch.save(method.state_dict(), out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_end_with_identical_weights(tiny_phantom, tmp_path):
    vocab, train, _ = tiny_phantom
    train = train.subset(np.arange(32))
    mp.spawn(_train_rank, args=(2, _free_port(), vocab, train, tmp_path), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True)["generators"] for r in (0, 1)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    single = XRayGAN(tiny_model("xraygan"), vocab, image_size=64, device="cpu", seed=5).state_dict()["generators"]
    assert any(not torch.equal(single[k], states[0][k]) for k in single)  # training changed the weights
    assert (tmp_path / "run" / "ckpt" / "last.pt").is_file()  # written by rank 0
