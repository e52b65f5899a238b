"""Why does a trained SPAIR put two boxes on one bird? A table for one checkpoint.

    python benchmarks/spair_doubles.py runs/fig8/split_spair_hard_seed0/checkpoints/last.ckpt --variant hard

On held-out scenes (held-out sprites, the validation colours, as ``spair_counting.py``) it finds
every image with a double detection (two present boxes with IoU > 0.5, as ``CountingCallback``)
and prints: how far apart the two cells are (in cells), whether both boxes match the same true
bird, and what switching the weaker box off changes in the reconstruction (nats, posterior means,
hard z_pres) next to what one more object costs in the objective (the count prior's price; the
other KLs are paid by every cell, on or off).
A double that the reconstruction pays for is the objective's choice; one it does not pay for is
an optimisation trap. ``--gradients S`` adds, averaged over S posterior samples of a training
step's loss, the gradient of the loss on each cell's z_pres logit for the weaker and the stronger box
of each double, single present boxes and absent cells: whether the objective's gradient tells the
two cells of a double apart.
"""
from __future__ import annotations

import argparse
import math
import statistics

import torch

from datamodules.multi_bird import SceneGenerator, colours_for, sprite_banks
from lightning_modules.nn.glimpse import pairwise_iou
from lightning_modules.spair import SPAIR


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a Lightning checkpoint of lightning_modules.spair.SPAIR")
    p.add_argument("--variant", default="hard", choices=["easy", "hard"])
    p.add_argument("--val-size", type=int, default=400)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--gradients", type=int, default=0, metavar="S", help="also the z_pres logit gradients over S samples")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    m = SPAIR.load_from_checkpoint(a.checkpoint, map_location="cpu").eval()
    _, heldout = sprite_banks("synthetic", 0)
    val = SceneGenerator(a.variant, heldout, colours_for(a.variant, "val"))(a.val_size, torch.Generator().manual_seed(1))
    x, true_count = val["image"].float() / 255, val["count"]
    true_boxes, true_mask = val["boxes"].float(), val["boxes_mask"]
    with torch.no_grad():
        z_l = m.local_branch.encode(x) if m.local_branch is not None else None
        lat = m.infer(x, z_l, sample=False)
        bg = m._background(x, z_l, sample=False)[0]
        boxes, scores, counts = m.detect(x)
        app = m.appearance(lat["z_what"], z_l)
        on = (scores > 0.5).float().unsqueeze(-1)

        def nll(z_pres):
            return m.recon_nll(m.render(lat["z_what"], lat["z_where"], lat["z_depth"], z_pres, bg, z_l, appearance=app)["recon"], x)

        full = nll(on)
        # the only term of the objective that depends on presence (the KLs of z_what, z_where and z_depth
        # are paid by every cell, on or off, as the authors' spair/trainer.py:162-166): the count prior's
        # price of one more object
        price = m.beta * m.z_pres_beta * -math.log(1 - m.z_pres_prior_prob)
        shift = m.max_shift * torch.tanh(lat["z_where"][..., 2:])  # (B, N, 2) box centre offsets in cells
        n = boxes.shape[1]
        pair = (on * on.transpose(1, 2)).bool() & ~torch.eye(n, dtype=torch.bool) & (pairwise_iou(boxes.float()) > 0.5)
        rows = []
        for i in pair.flatten(1).any(1).nonzero()[:, 0].tolist():
            c1, c2 = pair[i].nonzero()[0].tolist()
            gains = []
            for c in (c1, c2):
                off = on.clone()
                off[i, c] = 0
                gains.append((nll(off)[i] - full[i]).item())  # reconstruction lost by switching c off
            truth = pairwise_iou(torch.cat([boxes[i, [c1, c2]], true_boxes[i][true_mask[i]]])[None].float())[0, :2, 2:]
            dist = max(abs(a_ - b_) for a_, b_ in zip(divmod(c1, m.G), divmod(c2, m.G)))
            # which cell reaches across to the other (box centre shift towards it, in cells); c1 < c2 in
            # raster order, so c1 is the left / upper one
            toward = (m.cell_xy[c2] - m.cell_xy[c1]).sign()  # (x, y)
            reach = [(shift[i, c] * sgn * toward).max().item() for c, sgn in ((c1, 1), (c2, -1))]
            rows.append((dist, bool(truth.argmax(1)[0] == truth.argmax(1)[1]), min(gains), reach[0] > reach[1]))
    print(f"{a.checkpoint}: {a.val_size} held-out {a.variant} scenes, count_acc {(counts == true_count).float().mean():.3f}, "
          f"mean count {counts.float().mean():.2f} (true {true_count.float().mean():.2f})")
    if not rows:
        print("no double detections")
        return
    gain = [r[2] for r in rows]
    q = lambda v: " / ".join(f"{t:.1f}" for t in statistics.quantiles(v, n=4)) if len(v) > 1 else f"{v[0]:.1f}"  # noqa: E731
    print("| quantity | value |\n|---|---|")
    print(f"| scenes with a double detection | {len(rows) / a.val_size:.3f} ({len(rows)}) |")
    print(f"| the two cells adjacent (1 cell apart) / farther | {sum(r[0] == 1 for r in rows)} / {sum(r[0] > 1 for r in rows)} |")
    print(f"| both boxes on the same true bird | {sum(r[1] for r in rows)} |")
    print(f"| the cell reaching across is the left / upper one / the right / lower one | {sum(r[3] for r in rows)} / "
          f"{sum(not r[3] for r in rows)} |")
    print(f"| reconstruction lost by switching the weaker box off, nats (quartiles) | {q(gain)} |")
    print(f"| what one more object costs: beta z_pres_beta (-log(1 - z_pres_prior_prob)), nats | {price:.1f} |")
    print(f"| doubles the reconstruction pays for (loss > that price) | {sum(g > price for g in gain)} |")
    if a.gradients:
        logit_gradients(m, x, on[..., 0].bool(), pair, lat["pres_logits"][..., 0], a.gradients)


def logit_gradients(m: SPAIR, x: torch.Tensor, on: torch.Tensor, pair: torch.Tensor, logits: torch.Tensor, samples: int) -> None:
    """The training loss's gradient on each cell's z_pres logit (per image, after the prior anneal), mean
    over ``samples`` posterior samples, by kind of cell. Positive: gradient descent lowers the logit."""
    weak = (pair & (logits[:, :, None] < logits[:, None, :])).any(2)  # the weaker box of a double
    kinds = {"weaker box of a double": weak, "stronger box of a double": pair.any(2) & ~weak,
             "single present box": on & ~pair.any(2), "absent cell": ~on}
    m.train()
    m.step_count = lambda: 10**9  # the annealed prior
    infer, kept = m.infer, {}

    def keep(*args, **kw):
        out = infer(*args, **kw)
        out["pres_logits"].retain_grad()
        kept["logits"] = out["pres_logits"]
        return out

    m.infer = keep
    grad = torch.zeros_like(logits)
    for s in range(samples):
        torch.manual_seed(s)
        m.zero_grad()
        (m.compute_loss(x)["loss"] * x.shape[0]).backward()
        grad += kept["logits"].grad[..., 0] / samples
    print(f"\n| cell ({samples} samples) | cells | logit quartiles | dLoss/dlogit quartiles | share the gradient pushes on |"
          "\n|---|---|---|---|---|")
    quartiles = lambda v: " / ".join(f"{t:.2f}" for t in torch.quantile(v, torch.tensor([0.25, 0.5, 0.75])).tolist())  # noqa: E731
    for name, mask in kinds.items():
        v = grad[mask]
        if len(v):
            print(f"| {name} | {len(v)} | {quartiles(logits[mask])} | {quartiles(v)} | {(v < 0).float().mean():.2f} |")


if __name__ == "__main__":
    main()
