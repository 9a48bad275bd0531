"""Two gloo workers on CPU compute the same codebook as one worker on the union of their batches."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqnat.quantization import VectorQuantizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make(mode: str) -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(6, codebook_size=12, mode=mode, decay=0.9, num_samples=1).train()


def _batches(step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(2, 30, 6, generator=g)  # (workers, N per worker, D)


def _worker(rank: int, port: int, steps: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        vq = _make("hard")
        for step in range(steps):
            vq(_batches(step)[rank])
        torch.save(vq.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_all_reduced_update_equals_single_process_on_union(tmp_path):
    steps = 4
    mp.start_processes(_worker, args=(_free_port(), steps, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    single = _make("hard")
    for step in range(steps):
        single(_batches(step).reshape(-1, 6))
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, expected in single.state_dict().items():
        for rank, state in enumerate(states):
            torch.testing.assert_close(state[name], expected, msg=f"{name} on rank {rank}")
    # Without the all-reduce the workers would disagree: check that the batches really differ.
    alone = _make("hard")
    for step in range(steps):
        alone(_batches(step)[0])
    assert not torch.allclose(alone.codebook.embedding, states[0]["codebook.embedding"])
