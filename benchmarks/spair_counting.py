"""When does SPAIR start counting? Counting accuracy over training with a bare loop.

    python benchmarks/spair_counting.py                                   # quickstart_spair_easy.yaml's model
    python benchmarks/spair_counting.py --seed 1 --set z_pres_prior_prob=0.99
    python benchmarks/spair_counting.py --set sequential=true --steps 1000
    python benchmarks/spair_counting.py --variant hard --config configs/quickstart_split_spair.yaml

Trains the config's model on scenes drawn fresh every step (synthetic birds, the training
colours) with Adam at the config's learning rate and gradient clipping 1.0, and every
``--every`` steps prints, on held-out sprites with the validation colours: counting accuracy,
mean predicted count, mean absolute count error, the share of scenes with every cell on, the share with a
double detection (two present boxes with IoU > 0.5) and the RMSE of the background model's
image alone against the scene (birds included: how much of the scene the background draws),
next to the majority-count baseline. These are the bare-loop tables of benchmarks/results/fig8_log.md.
"""
from __future__ import annotations

import argparse
import time

import torch
import yaml

from callbacks.counting import has_double_detection
from datamodules.multi_bird import SceneGenerator, colours_for, sprite_banks
from lightning_modules.spair import SPAIR
from lightning_modules.split import LocalBranch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/quickstart_spair_easy.yaml")
    p.add_argument("--variant", default="easy", choices=["easy", "hard"])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--val-size", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="model init arg, key=yaml value")
    p.add_argument("--local", action="append", default=[],
                   help="LocalBranch init arg, key=yaml value (adds a SPLIT branch to a SPAIR config)")
    p.add_argument("--save", default="", help="save the trained model's state_dict and init args here")
    p.add_argument("--init", default="", help="start from this Lightning checkpoint's weights (e.g. a fig8 run's last.ckpt)")
    p.add_argument("--start-step", type=int, default=0, help="the step count to continue from (schedules: anneal, warm-ups)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    cfg = yaml.safe_load(open(a.config))["model"]["init_args"]
    lr = cfg["optimizer"]["init_args"]["lr"]
    init = {k: v for k, v in cfg.items() if k not in ("optimizer", "lr_scheduler", "local_branch")}
    for kv in a.set:
        k, v = kv.split("=", 1)
        init[k] = yaml.safe_load(v)
    local = dict(cfg["local_branch"].get("init_args", {})) if "local_branch" in cfg else None
    for kv in a.local:
        k, v = kv.split("=", 1)
        local = (local or {}) | {k: yaml.safe_load(v)}
    if local is not None:
        init["local_branch"] = LocalBranch(**local)
    torch.manual_seed(a.seed)
    birds, heldout = sprite_banks("synthetic", 0)
    gen = SceneGenerator(a.variant, birds, colours_for(a.variant, "train"))
    val = SceneGenerator(a.variant, heldout, colours_for(a.variant, "val"))(a.val_size, torch.Generator().manual_seed(1))
    x_val, count_val = val["image"].float() / 255, val["count"]
    model = SPAIR(**init)
    if a.init:  # fine-tune: the checkpoint's weights, a fresh optimiser
        res = model.load_state_dict(torch.load(a.init, map_location="cpu", weights_only=False)["state_dict"], strict=False)
        if res.missing_keys or res.unexpected_keys:
            raise SystemExit(f"--init {a.init} does not fit this model: missing {res.missing_keys}, "
                             f"unexpected {res.unexpected_keys}")
    opt = model.build_optimizer(lambda params: torch.optim.Adam(params, lr=lr))
    g = torch.Generator().manual_seed(a.seed)
    majority = torch.bincount(count_val).max().item() / len(count_val)
    print(f"majority-count baseline {majority:.3f}, mean true count {count_val.float().mean():.2f}")
    print(f"{'step':>6} {'time':>6} {'count_acc':>9} {'mean count':>10} {'abs err':>7} {'all on':>6} {'doubles':>7} {'bg rmse':>7} {'loss':>9}")
    t0 = time.time()
    for step in range(1, a.steps + 1):  # a bare loop: the schedule is the object here, not the trainer
        model.step_count = lambda s=step: a.start_step + s - 1  # the trainer's global_step
        loss = model.compute_loss(gen(a.batch_size, g)["image"].float() / 255)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % a.every:
            continue
        model.eval()
        with torch.no_grad():
            det = [model.detect(x_val[i : i + 100]) for i in range(0, len(x_val), 100)]
            z_l = model.local_branch.encode(x_val) if model.local_branch is not None else None
            bg_rmse = (model._background(x_val, z_l, sample=False)[0] - x_val).pow(2).mean().sqrt()
        counts = torch.cat([d[2] for d in det])
        doubles = torch.cat([has_double_detection(d[0], d[1] > 0.5) for d in det]).float().mean()
        model.train()
        print(f"{step:>6} {time.time() - t0:>5.0f}s {(counts == count_val).float().mean():>9.3f} "
              f"{counts.float().mean():>10.2f} {(counts - count_val).abs().float().mean():>7.2f} "
              f"{(counts == model.N).float().mean():>6.2f} {doubles:>7.2f} {bg_rmse:>7.3f} {loss.item():>9.1f}", flush=True)
        if a.save:
            torch.save({"state_dict": model.state_dict(), "init": {k: v for k, v in init.items() if k != "local_branch"},
                        "local": local, "step": step}, a.save)


if __name__ == "__main__":
    main()
