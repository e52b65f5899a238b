"""Paper 1 Sec. 5 ("Third" and "Forth"): what the auxiliary transform and the patch size r do.

    python benchmarks/aux_transforms.py                  # every setting, one seed, quick-start SPLIT-VAE
    python benchmarks/aux_transforms.py --only blur phase_scramble --seed 1
    python benchmarks/aux_transforms.py --collect-only   # table and figure from the finished runs

Each setting trains the shipped quick-start SPLIT-VAE (``configs/quickstart.yaml``, unchanged
but for the transform) through ``lightning fit`` in ``runs/aux_transforms/<setting>_seed<S>``
and reads its Table 1 numbers. One judge (trained once, on the quick-start training split) scores
every setting, so the gaps are comparable. Finished runs are skipped (resumable). The table and
figure come from :mod:`splitlab.report` (``runs/aux_transforms/report/``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from splitlab.report import Group, build_report, fmt, read_run  # noqa: E402

T = "lightning_modules.nn.aux_transforms."
SETTINGS: dict[str, dict | None] = {
    "patch_shuffle_r1": None,  # the shipped quick-start: PatchShuffle(1)
    "patch_shuffle_r2": {"class_path": T + "PatchShuffle", "init_args": {"patch_size": 2}},
    "patch_shuffle_r4": {"class_path": T + "PatchShuffle", "init_args": {"patch_size": 4}},
    "patch_shuffle_r8": {"class_path": T + "PatchShuffle", "init_args": {"patch_size": 8}},
    "in_patch_shuffle_r4": {"class_path": T + "InPatchShuffle", "init_args": {"patch_size": 4}},
    "phase_scramble": {"class_path": T + "PhaseScramble"},
    "blur_sigma2": {"class_path": T + "GaussianBlur", "init_args": {"sigma": 2.0}},
    "blur1_then_patch_shuffle_r4": {"class_path": T + "Compose", "init_args": {"transforms": [
        {"class_path": T + "GaussianBlur", "init_args": {"sigma": 1.0}},
        {"class_path": T + "PatchShuffle", "init_args": {"patch_size": 4}}]}},
}
OUT = os.path.join(ROOT, "runs", "aux_transforms")


def train_judge(path: str) -> None:
    """The Table 1 judge of the quick-start data, trained once for every setting."""
    import pytorch_lightning as pl
    import torch

    from datamodules.digits import ColouredDigitsDataModule
    from lightning_modules.classifier import Classifier

    dm = ColouredDigitsDataModule()
    dm.setup("fit")
    judge = Classifier(channels=3, num_classes=10, width=16)
    judge.fit_tensors(dm.train_set.images, dm.train_set.labels, epochs=30, holdout=0.1, patience=2)
    print(f"judge: held-out accuracy {judge.holdout_acc:.4f} after {len(judge.fit_history)} epochs", flush=True)
    torch.save({"state_dict": judge.state_dict(), "hyper_parameters": dict(judge.hparams),
                "pytorch-lightning_version": pl.__version__}, path)


def config_for(name: str, seed: int, judge: str) -> str:
    with open(os.path.join(ROOT, "configs", "quickstart.yaml")) as f:
        cfg = yaml.safe_load(f)
    folder = os.path.join(OUT, f"{name}_seed{seed}")
    cfg["seed_everything"] = seed
    cfg["trainer"]["default_root_dir"] = OUT
    cfg["run"] = f"{name}_seed{seed}"  # the run folder OUT/<name>_seed<seed>
    cfg["trainer"]["logger"] = False
    for cb in cfg["trainer"]["callbacks"]:
        if cb["class_path"].endswith("Table1Callback"):
            cb.setdefault("init_args", {})["judge_ckpt"] = judge
    if SETTINGS[name] is not None:
        cfg["model"]["init_args"]["local_branch"]["init_args"]["transform"] = SETTINGS[name]
    os.makedirs(os.path.join(OUT, "configs"), exist_ok=True)
    path = os.path.join(OUT, "configs", f"aux_{name}.yaml")  # the config name is the setting in metrics.json
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--collect-only", action="store_true")
    a = p.parse_args()
    os.makedirs(OUT, exist_ok=True)
    judge = os.path.join(OUT, "judge.ckpt")
    if not a.collect_only and not os.path.isfile(judge):
        train_judge(judge)
    rows = []
    for name in a.only:
        folder = config_for(name, a.seed, judge)
        if not a.collect_only and not os.path.isfile(os.path.join(folder, "metrics_fit.json")):
            cmd = [sys.executable, "-m", "splitlab", "fit", "--config", os.path.join(OUT, "configs", f"aux_{name}.yaml")]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)
        if os.path.isfile(os.path.join(folder, "metrics_fit.json")):
            run = read_run(folder)
            g = Group(name, name, [run])
            rows.append([name] + [fmt(g.values(f"val/table1_{k}")) for k in
                                  ("judge_acc", "acc_recon", "acc_resample_z_l", "acc_resample_z_g", "gap")])
    table = ["| setting | judge | recon | z_l resampled | z_g resampled | gap |", "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    print("\nQuick-start SPLIT-VAE, Table 1 on the val digits, per auxiliary transform (seed "
          f"{a.seed}):\n\n" + "\n".join(table))
    _, figs, _, _ = build_report([OUT], os.path.join(OUT, "report"))
    print(f"\nreport and figures: {os.path.join(OUT, 'report')} ({len(figs)} figures)")


if __name__ == "__main__":
    main()
