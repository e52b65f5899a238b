"""How fast can SPAIR's background model learn Multi-Bird-Hard's checkerboards on its own?

    python benchmarks/hard_background.py                          # conv and dense backgrounds, z_bg 64
    python benchmarks/hard_background.py --background conv --z-bg 16 --steps 4000

Trains only the background encoder / decoder of a config's SPAIR (its ``background``, ``z_bg_dim``,
``z_bg_beta``, ``recon_sigma``) as a VAE on bird-free Hard backgrounds (two of the training colours,
6-px cells, a random rotation), drawn fresh every step, Adam at the config's learning rate, and
every ``--every`` steps prints the RMSE of its reconstruction of 400 held-out backgrounds (the
validation colours), next to the RMSE of the best constant (each image's mean colour: what a
background that has not learned the pattern draws) and KL(z_bg). In SPAIR on Hard the objects
switch off only once the background draws the checkerboard better than they do: at recon_sigma
0.2 sixteen objects cost ~170 nats, so the background must reach an RMSE of ~0.05 (benchmarks/results/fig8_log.md).
"""
from __future__ import annotations

import argparse
import time

import torch
import yaml

from datamodules.multi_bird.scenes import backgrounds, colours_for
from lightning_modules.nn.distributions import gaussian_kl_std_normal
from lightning_modules.spair import SPAIR


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/quickstart_spair.yaml")
    p.add_argument("--background", nargs="+", default=["conv", "dense"])
    p.add_argument("--z-bg", type=int, default=0, help="z_bg size (0: the config's)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(open(a.config))["model"]["init_args"]
    lr = cfg["optimizer"]["init_args"]["lr"]
    train_colours = torch.tensor(colours_for("hard", "train"), dtype=torch.float32)
    val = backgrounds("hard", torch.tensor(colours_for("hard", "val"), dtype=torch.float32), 400,
                      torch.Generator().manual_seed(1)) / 255
    const = (val - val.mean((2, 3), keepdim=True)).pow(2).mean().sqrt().item()
    print(f"best constant (each image's mean colour): RMSE {const:.3f}")
    print(f"{'background':>10} {'z_bg':>4} {'step':>6} {'time':>6} {'rmse':>6} {'kl_bg':>6}")
    for kind in a.background:
        torch.manual_seed(a.seed)
        z_bg = a.z_bg or cfg.get("z_bg_dim", 64)
        m = SPAIR(image_size=cfg.get("image_size", 48), background=kind, z_bg_dim=z_bg, recon_sigma=cfg.get("recon_sigma"),
                  glimpse_size=8, z_what_dim=4, backbone_width=8, feature_dim=8, sequential=False,
                  upsample=cfg.get("upsample", "nearest"))
        params = list(m.bg_encoder.parameters()) + list(m.bg_decoder.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        beta = cfg.get("z_bg_beta", 1.0)
        g = torch.Generator().manual_seed(a.seed)
        t0 = time.time()
        for step in range(1, a.steps + 1):
            x = backgrounds("hard", train_colours, a.batch_size, g) / 255
            bg, _, mu, logvar = m._background(x, None, sample=True)
            kl = gaussian_kl_std_normal(mu, logvar)
            loss = (m.recon_nll(bg, x) + beta * kl).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step % a.every == 0:
                with torch.no_grad():
                    rec, _, mu, logvar = m._background(val, None, sample=False)
                    kl = gaussian_kl_std_normal(mu, logvar).mean()
                rmse = (rec - val).pow(2).mean().sqrt().item()
                print(f"{kind:>10} {z_bg:>4} {step:>6} {time.time() - t0:>5.0f}s {rmse:>6.3f} {kl.item():>6.1f}", flush=True)


if __name__ == "__main__":
    main()
