"""Learning, not just running: each family, on a small problem it can learn in about a minute on 2 CPU
cores, shows its paper's effect, and the variant without the paper's idea does not.

The runs go through the CLI (in this process) with the shipped quick-start configs, shrunk by
the overrides below (16x16 digits, two conv levels); the margins were measured over seeds 0-2
(numbers in each test's docstring), and each docstring names the change that makes it fail."""
from __future__ import annotations

import time

import pytest
import torch

from tests.conftest import cli, read_metrics

# the quick-start digits at 16x16 and the quick-start conv nets with two levels instead of three
SMALL_DIGITS = ["--data.init_args.image_size=16", "--model.init_args.image_size=16", "--data.init_args.copies=6",
                "--model.init_args.encoder_widths=[32,64]", "--model.init_args.decoder_widths=[64,32]"]
SMALL_BRANCH = ["--model.init_args.local_branch.init_args.encoder_widths=[16,32]",
                "--model.init_args.local_branch.init_args.decoder_widths=[32,16]"]


def _fit(config: str, run_dir, *overrides: str) -> tuple[dict, float]:
    t0 = time.time()
    r = cli(["fit", "--config", config, "--trainer.logger=false", f"--trainer.default_root_dir={run_dir}", *overrides])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return read_metrics(run_dir)["metrics"], time.time() - t0


@pytest.mark.slow
def test_split_vae_opens_the_table1_gap_and_plain_vae_does_not(tmp_path):
    """Paper 1 Table 1 pattern: resampling z_l keeps the digit, resampling z_g loses it, for the SPLIT-VAE only.

    ``configs/quickstart.yaml`` and ``configs/quickstart_vae.yaml`` on ``SMALL_DIGITS``, 6 epochs (726 steps).
    Measured on 2 cores, seeds 0 / 1 / 2: SPLIT-VAE recon 0.66 / 0.71 / 0.65, gap 0.45 / 0.42 / 0.43; plain VAE
    gap -0.00 / 0.00 / -0.02 (~40 s a run). The mutation it catches is the plain-VAE run itself: SPLIT-VAE with
    its local branch removed has no gap."""
    six = "--trainer.max_epochs=6"
    split, t_split = _fit("configs/quickstart.yaml", tmp_path / "split", *SMALL_DIGITS, *SMALL_BRANCH, six)
    plain, t_plain = _fit("configs/quickstart_vae.yaml", tmp_path / "plain", *SMALL_DIGITS, six)
    gap_split = split["val/table1_acc_resample_z_l"] - split["val/table1_acc_resample_z_g"]
    gap_plain = plain["val/table1_acc_resample_z_l"] - plain["val/table1_acc_resample_z_g"]
    for name, m, t, gap in (("SPLIT-VAE", split, t_split, gap_split), ("plain VAE", plain, t_plain, gap_plain)):
        print(f"\n{name} ({t:.0f}s): recon {m['val/table1_acc_recon']:.3f} z_l resampled "
              f"{m['val/table1_acc_resample_z_l']:.3f} z_g resampled {m['val/table1_acc_resample_z_g']:.3f} "
              f"gap {gap:.3f} (judge {m['val/table1_judge_acc']:.3f})")
    assert split["val/table1_judge_acc"] >= 0.9  # the judge reads clean digits, so the accuracies mean something
    assert split["val/table1_acc_recon"] > 0.5  # the digits are reconstructed at all
    assert gap_split >= 0.3
    # no such gap: the plain VAE's "z_l" half does not hold the local part (its sign is arbitrary)
    assert abs(gap_plain) < 0.15


@pytest.mark.slow
def test_split_gmvae_clusters_by_digit_and_gmvae_does_not(tmp_path):
    """Paper 1 Table 2 pattern: with the local branch, the GMVAE's clusters follow the digit, not the colours.

    ``configs/quickstart_split_gmvae.yaml`` and ``configs/quickstart_gmvae.yaml`` on ``SMALL_DIGITS``, 12 epochs
    (1,452 steps; at 6 the two were still alike, 0.24 / 0.22 for seed 0). Measured on 2 cores, cluster ACC for
    seeds 0 / 1 / 2: SPLIT-GMVAE 0.386 / 0.470 / 0.460, GMVAE 0.208 / 0.182 / 0.166 (~70 s and ~50 s a run). The mutation it
    catches is the GMVAE run itself: SPLIT-GMVAE with its local branch removed clusters by colour."""
    twelve = "--trainer.max_epochs=12"
    split, t_split = _fit("configs/quickstart_split_gmvae.yaml", tmp_path / "split_gmvae", *SMALL_DIGITS, *SMALL_BRANCH,
                          twelve)
    plain, t_plain = _fit("configs/quickstart_gmvae.yaml", tmp_path / "gmvae", *SMALL_DIGITS, twelve)
    for name, m, t in (("SPLIT-GMVAE", split, t_split), ("GMVAE", plain, t_plain)):
        print(f"\n{name} ({t:.0f}s): ACC {m['val/cluster_acc']:.3f} Hungarian {m['val/cluster_acc_hungarian']:.3f} "
              f"NMI {m['val/cluster_nmi']:.3f} ARI {m['val/cluster_ari']:.3f}")
    assert split["val/cluster_acc"] >= plain["val/cluster_acc"] + 0.1


@pytest.mark.slow
def test_spair_counts_birds_on_easy_scenes():
    """SPAIR with ``configs/quickstart_spair_easy.yaml``'s model on Easy scenes drawn fresh each step
    (synthetic birds), 3,000 steps of a bare loop at batch 16 (the trainer adds nothing to learn from;
    the config's batch is 32, halved to keep the test short on 2 cores): the
    held-out reconstruction error falls five-fold; counting accuracy on held-out sprites
    (validation colours), averaged over the two checks right after the count prior has annealed
    (steps 2,000 and 2,250 for the config's 2,000-step anneal; 1,250 and 1,500 when it annealed over
    1,000; it moves by several points from one check to the next), clearly beats always answering
    the most frequent count, and averaged over the checks at 2,500-3,000 steps it reaches 0.50 (the
    higher bar: the quick-start before z_pres_beta, the 17-px size prior and the straight-through logit
    clip measured 0.44 at batch 32 and 2,000 steps). Measured on 2 cores, 2026-12-02: 0.495, 0.520 at
    2,000 / 2,250 steps, 0.533, 0.572, 0.562 at 2,500 / 2,750 / 3,000 (331 s under pytest); at batch 32 the same
    checks read 0.625, 0.595 / 0.590, 0.640, 0.712, but 2,500 steps took 458 s in an earlier full suite.
    On a slower 2-core machine (2026-12-05) this test took 399 s in the full suite."""
    import yaml

    from datamodules.multi_bird import SceneGenerator, colours_for, sprite_banks
    from lightning_modules.spair import SPAIR

    torch.manual_seed(0)
    cfg = yaml.safe_load(open("configs/quickstart_spair_easy.yaml"))["model"]["init_args"]
    model = SPAIR(**{k: v for k, v in cfg.items() if k not in ("optimizer", "lr_scheduler")})  # the shipped quick-start model; its lr decay starts at 6,000 steps, after this test
    birds, heldout = sprite_banks("synthetic", 0)
    gen = SceneGenerator("easy", birds, colours_for("easy", "train"))
    val = SceneGenerator("easy", heldout, colours_for("easy", "val"))(400, torch.Generator().manual_seed(1))
    x_val, count_val = val["image"].float() / 255, val["count"]
    majority = torch.bincount(count_val).max().item() / len(count_val)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["optimizer"]["init_args"]["lr"])
    g = torch.Generator().manual_seed(0)
    first = max(1250, cfg["z_pres_anneal_steps"])  # the first check once the count prior has annealed
    batch, steps, late_from = 16, 3000, 2500  # the config's batch 32 halved for CI time (docstring)

    def evaluate() -> tuple[float, float, float]:
        model.eval()
        with torch.no_grad():
            recon = model.decode_parts(model.encode(x_val))["recon"]
            counts = torch.cat([model.detect(x_val[i : i + 100])[2] for i in range(0, len(x_val), 100)])
        model.train()
        return ((recon - x_val).abs().mean().item(), (counts == count_val).float().mean().item(),
                counts.float().mean().item())

    recon0, _, _ = evaluate()
    accs, means, late = [], [], []
    for step in range(1, steps + 1):
        model.step_count = lambda s=step: s - 1  # the trainer's global_step
        loss = model.compute_loss(gen(batch, g)["image"].float() / 255)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the config's gradient_clip_val
        opt.step()
        if step in (first, first + 250) or (step >= late_from and step % 250 == 0):
            recon, acc, mean = evaluate()
            if step <= first + 250:
                accs.append(acc)
            if step >= late_from:
                late.append(acc)
            means.append(mean)
    acc, acc_late = sum(accs) / len(accs), sum(late) / len(late)
    print(f"\nSPAIR {steps} steps at batch {batch} on Easy: reconstruction L1 {recon0:.3f} -> {recon:.3f}; counting accuracy "
          f"{late} (mean {acc:.3f} at {first}-{first + 250}, {acc_late:.3f} at {late_from}-{steps}) vs majority count "
          f"{majority:.3f}; mean predicted count {means} vs true {count_val.float().mean():.2f}")
    assert recon < 0.25 * recon0
    assert acc >= majority + 0.1  # the bar this test has held since it was written
    # the higher bar: the old quick-start (18-px receptive field) stayed near 0.3-0.36 by
    # 2,000 steps; the authors' 22-px receptive field and a 0.9999 prior gave 0.44 (0.31 with 0.999:
    # double detections); z_pres_beta 3 and 17-px prior boxes remove most double and split detections
    # (batch 32, benchmarks/spair_counting.py: 0.58-0.62 at 2,500-3,000 steps, 0.72 at 4,000)
    assert acc_late >= 0.50


@pytest.fixture(scope="module")
def flow_runs(tmp_path_factory) -> dict[str, dict]:
    """The two flow quick-starts (same decoder, 484 steps) on 16x16 digits, trained once for the tests below."""
    root = tmp_path_factory.mktemp("flow")
    small = ["--data.init_args.image_size=16", "--model.init_args.image_size=16"]
    vae, t_vae = _fit("configs/quickstart_flow_vae.yaml", root / "flow_vae", *small, "--model.init_args.encoder_widths=[16,32]")
    glow, t_glow = _fit("configs/quickstart_glow.yaml", root / "glow", *small)
    print(f"\nflow VAE ({t_vae:.0f}s): bpd {vae['val/bpd']:.3f}, probe on z {vae['val/probe_acc_z_g']:.3f}, "
          f"probe on v {vae['val/probe_acc_z_l']:.3f}, switch digit-from-v {vae['val/switch_acc_digit_from_v']:.3f} "
          f"(judge {vae['val/switch_judge_acc']:.3f})")
    print(f"refined Glow ({t_glow:.0f}s): bpd {glow['val/bpd']:.3f}, probe on v {glow['val/probe_acc_z_l']:.3f}")
    return {"vae": vae, "glow": glow}


@pytest.mark.slow
def test_flow_vae_bpd_beats_the_refined_glow_with_the_same_decoder(flow_runs):
    """Paper 2 Table 1 pattern: conditioning the flow on the encoder's z lowers bits/dim.

    Measured on 2 cores, seeds 0 / 1 / 2: flow VAE 4.43 / 4.54 / 4.30, refined Glow 4.77 / 4.78 / 4.73 bits/dim
    (~50 s and ~26 s a run). The mutation it catches is the Glow run itself: the flow VAE without its z."""
    vae, glow = flow_runs["vae"], flow_runs["glow"]
    assert vae["val/bpd"] < 5.0 and glow["val/bpd"] < 5.0  # both learned (8.0 = uniform)
    assert vae["val/bpd"] <= glow["val/bpd"] - 0.1


@pytest.mark.slow
def test_flow_vae_switch_keeps_the_digit_of_v(flow_runs):
    """Paper 2 Fig. 4 (the switch): decode(z of a, v of b) shows b's digit, so v keeps the global shape at this
    budget. The judge reads clean digits at >= 0.9; chance is 0.1. Measured, seeds 0 / 1 / 2: 0.49 / 0.60 / 0.45."""
    vae = flow_runs["vae"]
    assert vae["val/switch_judge_acc"] >= 0.9
    assert vae["val/switch_acc_digit_from_v"] >= 0.3
