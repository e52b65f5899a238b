"""What the flow VAE's z holds on the quick-start digits: linear probes on z and v over training.

    python benchmarks/flow_probe.py                                   # the shipped quick-start model
    python benchmarks/flow_probe.py --steps 1000 --set z_dim=64
    python benchmarks/flow_probe.py --set 'flow_steps=[1,1]' --set 'flow_hidden=[16,48]' --split

Trains ``configs/quickstart_flow_vae.yaml``'s model (optionally changed with ``--set key=value``,
or with a SPLIT ``LocalBranch`` with ``--split``) on the coloured digits with a bare loop (Adam,
the config's learning rate and warm-up) and at each ``--eval`` step prints: validation bits/dim,
KL(q(z|x) || p(z)) in nats, and the digit accuracy of a linear probe on z (``z_g``), on v
(``z_l``) and, for SPLIT, on the branch's latent (``z_split``), plus a 1-nearest-neighbour
probe on z (does z hold the digit at all, linearly or not?), and the R^2 of a linear regression
of the image's colours (foreground and background RGB) on z, v and the SPLIT latent. Paper 2
Table 4 on CIFAR-10: z 59.5 %, v 17.2 %. ``--split --patch-size 4`` runs SPLIT with r = 4.
"""
from __future__ import annotations

import argparse
import time

import torch
import yaml

from callbacks.flow import classifier_accuracy, encode_split, fit_linear_classifier, fit_ridge, r2_score
from datamodules.digits import ColouredDigitsDataModule
from lightning_modules.flow_vae import FlowVAE
from lightning_modules.split import LocalBranch


def features(model: FlowVAE, ds, n: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model.eval()
    out = encode_split(model, ds, n, 500)
    model.train()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/quickstart_flow_vae.yaml")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval", default="250,500,1000", help="steps at which to probe")
    p.add_argument("--set", action="append", default=[], help="model init arg, key=yaml value")
    p.add_argument("--split", action="store_true", help="add the quick-start's SPLIT LocalBranch (z_l 16)")
    p.add_argument("--patch-size", type=int, default=1, help="r of the SPLIT branch's patch shuffle")
    p.add_argument("--probe-train", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    cfg = yaml.safe_load(open(a.config))
    init = {k: v for k, v in cfg["model"]["init_args"].items() if k not in ("optimizer", "lr_scheduler")}
    lr = cfg["model"]["init_args"]["optimizer"]["init_args"]["lr"]
    wd = cfg["model"]["init_args"]["optimizer"]["init_args"].get("weight_decay", 0.0)
    warmup = cfg["model"]["init_args"]["lr_scheduler"]["init_args"]["warmup_steps"]
    for kv in a.set:
        k, v = kv.split("=", 1)
        init[k] = yaml.safe_load(v)
    if a.split:
        init["local_branch"] = LocalBranch(patch_size=a.patch_size, z_l_dim=16, encoder_widths=(16, 32, 64),
                                           decoder_widths=(32, 16, 16), norm=True)
    torch.manual_seed(a.seed)
    data = cfg["data"]["init_args"]
    dm = ColouredDigitsDataModule(copies=data.get("copies", 6), eval_copies=data.get("eval_copies", 2), seed=a.seed)
    dm.setup("fit")
    train, val = dm.splits["train"], dm.splits["val"]
    model = FlowVAE(**init)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    g = torch.Generator().manual_seed(a.seed)
    evals = {int(s) for s in a.eval.split(",")}
    bs = data.get("batch_size", 64)
    print(f"{'step':>6} {'time':>6} {'bpd':>6} {'kl_g':>7} {'lin z':>6} {'lin v':>6} {'lin z_split':>11} {'1-NN z':>7} "
          f"{'R2 z':>6} {'R2 v':>6} {'R2 z_split':>10}")
    t0 = time.time()
    for step in range(1, a.steps + 1):  # a bare loop: the probe is the object here, not the trainer
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, step / warmup)
        b = train.__getitems__(torch.randint(0, len(train), (bs,), generator=g).tolist())
        loss = model.compute_loss(b["image"].float() / 255.0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step not in evals:
            continue
        ftr, tr_fields = features(model, train, min(a.probe_train, len(train)))
        fva, va_fields = features(model, val, len(val))
        ytr, yva = tr_fields["label"], va_fields["label"]
        with torch.no_grad():
            terms = model.compute_loss(val.__getitems__(list(range(min(500, len(val)))))["image"].float() / 255.0)
        acc, r2 = {}, {}
        for k in ftr:
            w, bias = fit_ridge(ftr[k], tr_fields["colour"])
            r2[k] = r2_score(fva[k].double() @ w + bias, va_fields["colour"])
            acc[k] = classifier_accuracy(fit_linear_classifier(ftr[k], ytr), fva[k], yva)  # Table 4's linear SVM
        knn = float("nan")
        if "z_g" in ftr:
            mu, sd = ftr["z_g"].mean(0), ftr["z_g"].std(0).clamp_min(1e-6)
            nearest = torch.cdist((fva["z_g"] - mu) / sd, (ftr["z_g"] - mu) / sd).argmin(1)
            knn = (ytr[nearest] == yva).float().mean().item()
        print(f"{step:>6} {time.time() - t0:>5.0f}s {terms['bpd'].item():>6.3f} {terms.get('kl_g', torch.nan):>7.2f} "
              f"{acc.get('z_g', float('nan')):>6.3f} {acc['z_l']:>6.3f} {acc.get('z_split', float('nan')):>11.3f} "
              f"{knn:>7.3f} {r2.get('z_g', float('nan')):>6.3f} {r2['z_l']:>6.3f} {r2.get('z_split', float('nan')):>10.3f}",
              flush=True)


if __name__ == "__main__":
    main()
