"""Learning, not just running: on the quick-start data SPLIT-VAE puts the digit in z_g and the
colours in z_l (paper 1 Table 1 pattern); the plain VAE with the same latent split does not.

Both runs are the shipped quick-start configs, unchanged but for the run folder and logger."""
from __future__ import annotations

import time

import pytest
import torch

from tests.conftest import read_metrics, run_cli


def _fit(config: str, run_dir, *overrides: str) -> tuple[dict, float]:
    t0 = time.time()
    r = run_cli(["fit", "--config", config, "--trainer.logger=false", f"--trainer.default_root_dir={run_dir}", *overrides])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return read_metrics(run_dir)["metrics"], time.time() - t0


@pytest.mark.slow
def test_split_vae_opens_the_table1_gap_and_plain_vae_does_not(tmp_path):
    split, t_split = _fit("configs/quickstart.yaml", tmp_path / "split")
    plain, t_plain = _fit("configs/quickstart_vae.yaml", tmp_path / "plain")
    gap_split = split["val/table1_acc_resample_z_l"] - split["val/table1_acc_resample_z_g"]
    gap_plain = plain["val/table1_acc_resample_z_l"] - plain["val/table1_acc_resample_z_g"]
    print(f"\nSPLIT-VAE ({t_split:.0f}s): recon {split['val/table1_acc_recon']:.3f} "
          f"z_l resampled {split['val/table1_acc_resample_z_l']:.3f} z_g resampled "
          f"{split['val/table1_acc_resample_z_g']:.3f} gap {gap_split:.3f}")
    print(f"plain VAE ({t_plain:.0f}s): recon {plain['val/table1_acc_recon']:.3f} "
          f"z_l resampled {plain['val/table1_acc_resample_z_l']:.3f} z_g resampled "
          f"{plain['val/table1_acc_resample_z_g']:.3f} gap {gap_plain:.3f}")
    assert split["val/table1_acc_recon"] > 0.6  # the digits are reconstructed at all
    assert gap_split >= 0.4
    # no such gap: the plain VAE's "z_l" half does not hold the local part (its sign is arbitrary)
    assert gap_plain < 0.2
    assert gap_split > gap_plain + 0.3


@pytest.mark.slow
def test_split_gmvae_clusters_by_digit_and_gmvae_does_not(tmp_path):
    # 9 of the quick-starts' 12 epochs (no schedule depends on the length), to keep CI short: measured on 2 cores,
    # cluster ACC at epochs 9 / 12 was 0.434 / 0.444 for SPLIT-GMVAE and 0.178 / 0.178 for the GMVAE
    nine = "--trainer.max_epochs=9"
    split, t_split = _fit("configs/quickstart_split_gmvae.yaml", tmp_path / "split_gmvae", nine)
    plain, t_plain = _fit("configs/quickstart_gmvae.yaml", tmp_path / "gmvae", nine)
    for name, m, t in (("SPLIT-GMVAE", split, t_split), ("GMVAE", plain, t_plain)):
        print(f"\n{name} ({t:.0f}s): ACC {m['val/cluster_acc']:.3f} Hungarian {m['val/cluster_acc_hungarian']:.3f} "
              f"NMI {m['val/cluster_nmi']:.3f} ARI {m['val/cluster_ari']:.3f}")
    assert split["val/cluster_acc"] >= plain["val/cluster_acc"] + 0.15


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
    """The two shipped flow quick-starts, unchanged (same decoder, same 242 steps), trained once for the tests below."""
    root = tmp_path_factory.mktemp("flow")
    vae, t_vae = _fit("configs/quickstart_flow_vae.yaml", root / "flow_vae")
    glow, t_glow = _fit("configs/quickstart_glow.yaml", root / "glow")
    print(f"\nflow VAE ({t_vae:.0f}s): bpd {vae['val/bpd']:.3f}, probe on z {vae['val/probe_acc_z_g']:.3f}, "
          f"probe on v {vae['val/probe_acc_z_l']:.3f}, colour R2 z {vae['val/probe_colour_r2_z_g']:.3f} "
          f"v {vae['val/probe_colour_r2_z_l']:.3f}, switch colour-from-z {vae['val/switch_acc_colour_from_z']:.3f} "
          f"digit-from-v {vae['val/switch_acc_digit_from_v']:.3f} (judge {vae['val/switch_judge_acc']:.3f})")
    print(f"refined Glow ({t_glow:.0f}s): bpd {glow['val/bpd']:.3f}, probe on v {glow['val/probe_acc_z_l']:.3f}, "
          f"colour R2 v {glow['val/probe_colour_r2_z_l']:.3f}")
    return {"vae": vae, "glow": glow}


@pytest.mark.slow
def test_flow_vae_bpd_beats_the_refined_glow_with_the_same_decoder(flow_runs):
    """Conditioning the flow on the encoder's z lowers bits/dim (paper 2 Table 1 pattern)."""
    vae, glow = flow_runs["vae"], flow_runs["glow"]
    assert vae["val/bpd"] < 5.0 and glow["val/bpd"] < 5.0  # both learned (8.0 = uniform)
    assert vae["val/bpd"] <= glow["val/bpd"] - 0.1


@pytest.mark.slow
def test_flow_vae_switch_keeps_the_digit_of_v(flow_runs):
    """decode(z of a, v of b) shows b's digit (the judge reads the clean digits at >= 0.9)."""
    vae = flow_runs["vae"]
    assert vae["val/switch_judge_acc"] >= 0.9
    assert vae["val/switch_acc_digit_from_v"] >= 0.6


# Earlier criteria for "z holds the colours" at the shipped quick-start budget: measured and not met yet
# (docs/paper2.md). Kept at those thresholds; xfail until the model meets them.
# strict: the day a change meets one, the XPASS fails the suite and the marker must go.
NOT_YET = pytest.mark.xfail(reason="not met at the quick-start budget (measured numbers in docs/paper2.md)",
                            strict=True)


@pytest.mark.slow
@NOT_YET
def test_flow_vae_z_holds_the_colours(flow_runs):
    assert flow_runs["vae"]["val/probe_colour_r2_z_g"] >= 0.9


@pytest.mark.slow
@NOT_YET
def test_flow_vae_v_holds_less_colour_than_glows_v(flow_runs):
    assert flow_runs["vae"]["val/probe_colour_r2_z_l"] <= flow_runs["glow"]["val/probe_colour_r2_z_l"] - 0.2


@pytest.mark.slow
@NOT_YET
def test_flow_vae_switch_takes_the_colours_from_z(flow_runs):
    assert flow_runs["vae"]["val/switch_acc_colour_from_z"] >= 0.8
