"""Counting accuracy of trained SPAIR / SPLIT-SPAIR checkpoints, one background colour at a time.

    python benchmarks/count_by_colour.py runs/fig8/spair_easy_seed0/checkpoints/last.ckpt \
        runs/fig8/split_spair_easy_seed0/checkpoints/last.ckpt --variant easy

For each checkpoint and each background colour of the variant (the training colours, then the
unseen test colours), scenes of held-out sprites on that colour alone (Hard: checkerboards whose two
colours include it): count accuracy, mean predicted count (true: the mean of the scenes' counts) and
the share of scenes where the model sees more birds than there are. It says which colours an
unseen-colour accuracy (``count_acc_unseen_bg`` in ``fig8.py``) loses its points on, and whether a
model over- or under-counts there. Same scenes for every checkpoint (seeded).

On the scenes without birds it also says why: how far the background alone is from the image
(Gaussian nats at the model's ``recon_sigma``; an unseen colour the background cannot draw shows
here), and what switching one cell on there does to that error (median over cells and scenes; negative:
a false object *improves* the reconstruction, so only the count prior keeps the cell off); what z_bg
encodes (a linear read-out of the background colour from z_bg's posterior mean, fit on the empty
scenes of the training colours: its error on each colour, in RGB units of 0-255; a large error on an
unseen colour means z_bg does not carry it); and the presence the cells get there (mean presence
probability over cells and scenes, and the mean count the model reports on an empty scene).
"""
from __future__ import annotations

import argparse

import torch

from callbacks.flow import fit_ridge
from datamodules.multi_bird import SceneGenerator, SpriteBank, colours_for, sprite_banks
from lightning_modules.spair import SPAIR


def scenes_on(heldout: SpriteBank, variant: str, colour: tuple[int, int, int], n: int, seed: int) -> dict[str, torch.Tensor]:
    """n scenes of the held-out sprites with this background colour (Hard: paired with each other colour of its set)."""
    table = colours_for(variant, "train") if colour in colours_for(variant, "train") else colours_for(variant, "test")
    colours = [colour] if variant == "easy" else [colour, *[c for c in table if c != colour]]
    out = SceneGenerator(variant, heldout, colours)(n, torch.Generator().manual_seed(seed))
    if variant == "hard":  # keep the checkerboards that use this colour (pairs are drawn uniformly; fewer than n remain)
        keep = (out["image"].float() - torch.tensor(colour).view(1, 3, 1, 1)).abs().sum(1).lt(6).flatten(1).any(1)
        out = {k: v[keep] for k, v in out.items()}
    return out


@torch.no_grad()
def empty_scene_costs(model: SPAIR, x: torch.Tensor) -> tuple[float, float]:
    """x (B, C, H, W) scenes without birds -> (mean error of the background alone, median change of
    that error when one cell is switched on), both in nats under the model's Gaussian pixels."""
    z_l = model.local_branch.encode(x) if model.local_branch is not None else None
    lat = model.infer(x, z_l, sample=False)
    bg = model._background(x, z_l, sample=False)[0]
    scale = 2 * model.recon_sigma ** 2

    def error(pres: torch.Tensor) -> torch.Tensor:  # (B,) squared error / (2 sigma^2) of the composite
        recon = model.render(lat["z_what"], lat["z_where"], lat["z_depth"], pres, bg, z_l)["recon"]
        return ((recon - x) ** 2).flatten(1).sum(1) / scale

    off = x.new_zeros(x.shape[0], model.N, 1)
    base = error(off)
    one_on = torch.stack([error(off.index_fill(1, torch.tensor([i]), 1.0)) - base for i in range(model.N)], 1)
    return base.mean().item(), one_on.median().item()


@torch.no_grad()
def z_bg_readout(model: SPAIR, data: list) -> dict[tuple[int, int, int], float]:
    """A linear read-out of the background colour from z_bg's posterior mean, fit on the empty scenes of the
    training colours -> its mean absolute error (RGB, 0-255) on the empty scenes of every colour."""
    feats = {}
    for colour, _, d in data:
        empty = d["image"][d["count"] == 0].float() / 255
        z_l = model.local_branch.encode(empty) if model.local_branch is not None else None
        feats[colour] = model._background(empty, z_l, sample=False)[2]  # z_bg's posterior mean
    train = [c for c, split, _ in data if split == "train"]
    x = torch.cat([feats[c] for c in train])
    y = torch.cat([torch.tensor(c, dtype=torch.float64).expand(len(feats[c]), 3) for c in train])
    w, b = fit_ridge(x, y)
    return {c: ((f.double() @ w + b) - torch.tensor(c, dtype=torch.float64)).abs().mean().item() for c, f in feats.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--variant", choices=("easy", "hard"), default="easy")
    p.add_argument("--scenes", type=int, default=250, help="scenes per colour")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    colours = [(c, "train") for c in colours_for(a.variant, "train")] + [(c, "unseen") for c in colours_for(a.variant, "test")]
    _, heldout = sprite_banks("synthetic", 0)
    data = [(c, split, scenes_on(heldout, a.variant, c, a.scenes, seed=1000 + i)) for i, (c, split) in enumerate(colours)]
    print("| checkpoint | colour (RGB) | split | scenes | count_acc | mean count (true) | share over-counted | "
          "empty scenes | background-only error there (nats) | one cell switched on there (median nats) | "
          "z_bg read-out error (RGB) | mean presence | count reported on empty |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in a.checkpoints:
        model = SPAIR.load_from_checkpoint(path, map_location="cpu").eval()
        readout = z_bg_readout(model, data)
        for colour, split, d in data:
            x = d["image"].float() / 255
            counts = torch.cat([model.detect(chunk)[2] for chunk in x.split(100)])
            acc = (counts == d["count"]).float().mean().item()
            over = (counts > d["count"]).float().mean().item()
            empty = x[d["count"] == 0]
            bg_err, one_on = empty_scene_costs(model, empty) if model.recon_sigma and len(empty) else (float("nan"),) * 2
            with torch.no_grad():
                z_l = model.local_branch.encode(empty) if model.local_branch is not None else None
                pres = torch.sigmoid(model.infer(empty, z_l, sample=False)["pres_logits"]).mean().item()
                empty_count = model.detect(empty)[2].float().mean().item()
            print(f"| {path} | {colour} | {split} | {len(x)} | {acc:.3f} | {counts.float().mean():.2f} "
                  f"({d['count'].float().mean():.2f}) | {over:.3f} | {len(empty)} | {bg_err:.1f} | {one_on:+.1f} | "
                  f"{readout[colour]:.1f} | {pres:.3f} | {empty_count:.2f} |", flush=True)


if __name__ == "__main__":
    main()
