"""Every flow layer: inverse(forward(x)) == x and log|det J| equals a brute-force Jacobian (float64)."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.nn.flows import ActNorm, CondActNorm, CondCoupling, FlowStep, InvConv1x1, squeeze, unsqueeze


def _randomise(m: torch.nn.Module) -> None:
    """Non-trivial parameters (zero-initialised outputs would make couplings the identity)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _brute_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det| of the Jacobian of one image's flattened map, by autograd."""
    flat = x.reshape(-1)
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.view_as(x)).reshape(-1), flat)
    return torch.linalg.slogdet(jac)[1]


LAYERS = {
    "actnorm": lambda: ActNorm(4),
    "invconv": lambda: InvConv1x1(4),
    "cond_actnorm": lambda: CondActNorm(4, 3),
    **{f"coupling_{p}": (lambda p=p: CondCoupling(4, p, hidden=8, cond_dim=3, alpha=1.0)) for p in "ABCD"},
    "coupling_alpha_half": lambda: CondCoupling(4, "C", hidden=8, cond_dim=3, alpha=0.5),
    "step": lambda: FlowStep(4, hidden=8, cond_dim=3),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_inverse_and_logdet_match_brute_force(name):
    torch.manual_seed(1)
    layer = LAYERS[name]().double()
    x0 = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    layer.train()
    layer(x0, torch.randn(5, 3, dtype=torch.float64))  # actnorm's data-dependent init
    _randomise(layer)
    layer.eval()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    z = torch.randn(2, 3, dtype=torch.float64)
    y, logdet = layer(x, z)
    assert torch.allclose(layer.inverse(y, z).double(), x, atol=1e-8)
    for i in range(2):
        fn = lambda v, i=i: layer(v.unsqueeze(0), z[i : i + 1])[0][0].double()  # noqa: E731
        assert torch.allclose(logdet[i].double(), _brute_logdet(fn, x[i]), atol=1e-6), name


def test_vector_layers_of_the_flow_prior():
    torch.manual_seed(2)
    for layer in (ActNorm(6, dims=2), InvConv1x1(6, dims=2), CondCoupling(6, "D", hidden=8, dims=2),
                  FlowStep(6, hidden=8, dims=2)):
        layer = layer.double()
        layer(torch.randn(7, 6, dtype=torch.float64))
        _randomise(layer)
        layer.eval()
        x = torch.randn(3, 6, dtype=torch.float64)
        y, logdet = layer(x)
        assert torch.allclose(layer.inverse(y).double(), x, atol=1e-8)
        jac = torch.autograd.functional.jacobian(lambda v, layer=layer: layer(v.unsqueeze(0))[0][0].double(), x[0])
        assert torch.allclose(logdet[0].double(), torch.linalg.slogdet(jac)[1], atol=1e-6)


def test_actnorm_initialises_from_the_first_batch_once():
    a = ActNorm(3)
    x = 5 + 2 * torch.randn(64, 3, 4, 4)
    y, _ = a(x)
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    state = a.state_dict()
    assert bool(state["initialized"])  # saved with the checkpoint
    b = ActNorm(3)
    b.load_state_dict(state)
    y2, _ = b(torch.randn(8, 3, 4, 4))  # a resumed run does not re-initialise on its first batch
    assert torch.equal(b.bias, a.bias)


def test_squeeze_is_a_volume_preserving_bijection():
    x = torch.randn(2, 3, 8, 8)
    assert squeeze(x).shape == (2, 12, 4, 4) and torch.equal(unsqueeze(squeeze(x)), x)


def test_couplings_start_as_the_identity_and_logdets_stay_float32_under_bf16():
    c = CondCoupling(4, "A", hidden=8, cond_dim=3)
    x = torch.randn(2, 4, 5, 5)
    y, ld = c(x, torch.randn(2, 3))
    assert torch.allclose(y, x) and torch.allclose(ld, torch.zeros(2))
    # the authors' last layer: weight-normalised, direction v random, scale g zero (so only g gets a gradient first)
    wn = c.out.parametrizations.weight
    assert (wn.original0 == 0).all() and wn.original1.abs().sum() > 0
    (y * torch.randn_like(y)).sum().backward()
    assert wn.original0.grad.abs().sum() > 0 and (wn.original1.grad == 0).all()
    plain = CondCoupling(4, "A", hidden=8, cond_dim=3, weight_norm=False)  # the quick-starts' plain zero layer
    assert not hasattr(plain.out, "parametrizations") and (plain.out.weight == 0).all()
    (plain(x, torch.randn(2, 3))[0] * torch.randn_like(x)).sum().backward()
    assert plain.out.weight.grad.abs().sum() > 0  # every weight learns from the first step
    step = FlowStep(4, hidden=8, cond_dim=3)
    _randomise(step)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, ld = step(x, torch.randn(2, 3))
    assert ld.dtype == torch.float32


def _actnorm_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(rank)
    x = (rank * 3.0 + 1) + (rank + 1) * torch.randn(32, 2, 3, 3)  # each process sees different data
    a = ActNorm(2)
    a(x)
    torch.save({"bias": a.bias.detach(), "logs": a.logs.detach(), "x": x}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.ddp
def test_actnorm_init_is_the_same_on_every_ddp_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_actnorm_worker, args=(2, port, str(tmp_path)), nprocs=2)
    r0, r1 = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    assert torch.equal(r0["bias"], r1["bias"]) and torch.equal(r0["logs"], r1["logs"])
    both = torch.cat([r0["x"], r1["x"]])  # equal shards: the mean of the shards' stats is the global stats
    assert torch.allclose(-r0["bias"].view(2), both.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(torch.exp(-r0["logs"]).view(2), both.std((0, 2, 3), unbiased=False), atol=1e-4)


def test_coupling_scale_is_the_authors_bounded_tanh():
    """s = alpha * tanh(u / 2) + 1 (paper 2 appendix B.2; the u / 2 is the authors' code, XuezheMax/wolf
    wolf/flows/couplings/transform.py:56-59): 1 at u = 0, in (1 - alpha, 1 + alpha)."""
    from lightning_modules.nn.flows import CondCoupling

    c = CondCoupling(4, "A", 8, alpha=0.5)
    u = torch.tensor([-100.0, -2.0, 0.0, 2.0, 100.0])
    assert torch.allclose(c._scale(u), 0.5 * torch.tanh(u / 2) + 1)
    assert c._scale(torch.zeros(1)).item() == 1.0 and c._scale(u).min() >= 0.5 and c._scale(u).max() <= 1.5


def test_split_patterns_are_the_authors_also_for_an_odd_channel_count():
    """x_a conditions x_b, which has C // 2 channels (wolf's NICE2d); with C = 3 (the image itself) the alternate
    patterns C / D fall back to the halves A / B, as in wolf/flows/couplings/coupling.py:191-203."""
    from lightning_modules.nn.flows import _split_index

    def idx(c, p):
        return tuple(t.tolist() for t in _split_index(c, p))

    assert idx(4, "A") == ([0, 1], [2, 3]) and idx(4, "B") == ([2, 3], [0, 1])
    assert idx(4, "C") == ([0, 2], [1, 3]) and idx(4, "D") == ([1, 3], [0, 2])
    assert idx(3, "A") == idx(3, "C") == ([0, 1], [2])
    assert idx(3, "B") == idx(3, "D") == ([1, 2], [0])
    assert idx(9, "A") == (list(range(5)), [5, 6, 7, 8]) and idx(9, "B") == ([4, 5, 6, 7, 8], [0, 1, 2, 3])
