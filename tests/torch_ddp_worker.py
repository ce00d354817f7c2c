"""One adversarially regularized training step with torch DDP (gloo, CPU).

`python torch_ddp_worker.py WORLD_SIZE OUTPUT.npz`: with WORLD_SIZE 2, two
processes each take half of a global batch of 8 and train with
`DistributedDataParallel`, the loop shown in docs/distributed.md; with 1, one
process takes the whole batch. `torch_ddp_test.py` compares the weights.
"""

import datetime
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import neural_structured_learning as nsl  # noqa: E402

BATCH = 8
RENDEZVOUS_FAILED = 75  # Exit status: gloo could not connect the processes.
RNG = np.random.default_rng(0)
X = RNG.random((BATCH, 6)).astype("float32")
Y = (np.arange(BATCH) % 3).astype("int64")


def build():
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3)])
    rng = np.random.default_rng(1)
    model.set_weights([(rng.normal(size=w.shape) * 0.5).astype("float32")
                       for w in model.get_weights()])
    return model


def train_step(rank, world, rendezvous, output):
    torch.set_num_threads(1)
    if world > 1:
        # Loopback only: gloo otherwise binds the address the hostname resolves
        # to, which on some sandboxes is unreachable and hangs the handshake.
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        try:
            dist.init_process_group("gloo", rank=rank, world_size=world,
                                    init_method=f"file://{rendezvous}",
                                    timeout=datetime.timedelta(seconds=120))
        except Exception as error:  # The sandbox, not the code under test.
            print(f"RENDEZVOUS FAILED: {error!r}", file=sys.stderr)
            sys.exit(RENDEZVOUS_FAILED)
    model = build()
    ddp = (torch.nn.parallel.DistributedDataParallel(model) if world > 1
           else model)
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    x, y = torch.tensor(X[rows]), torch.tensor(Y[rows])
    config = nsl.configs.make_adv_reg_config(multiplier=0.5,
                                             adv_step_size=0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x_adv, _ = nsl.lib.gen_adv_neighbor(
        x, lambda f: loss_fn(y, model(f)), config.adv_neighbor_config)
    logits = ddp(torch.cat([x, x_adv]))
    n = len(x)
    loss = loss_fn(y, logits[:n]) + config.multiplier * loss_fn(
        y, logits[n:])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if rank == 0:
        np.savez(output, *[w for w in model.get_weights()])
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
        # Leave without running destructors: freeing DDP's reducer (and with
        # it the gloo process group) at interpreter exit can deadlock on the
        # GIL in torch 2.13 (seen here: ~ProcessGroupGloo joining a worker
        # thread that waits for the GIL). The work is done and saved.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    world, output = int(sys.argv[1]), sys.argv[2]
    rendezvous = output + ".rendezvous"
    if os.path.exists(rendezvous):  # A stale file would stall the handshake.
        os.remove(rendezvous)
    if world == 1:
        train_step(0, 1, rendezvous, output)
    else:
        try:
            mp.spawn(train_step, args=(world, rendezvous, output),
                     nprocs=world)
        except mp.ProcessExitedException as error:
            sys.exit(RENDEZVOUS_FAILED if error.exit_code == RENDEZVOUS_FAILED
                     else 1)
        finally:
            if os.path.exists(rendezvous):
                os.remove(rendezvous)
