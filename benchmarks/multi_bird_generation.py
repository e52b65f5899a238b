"""Multi-Bird scene generation speed: images/s for 10,000 scenes, CPU and (if present) GPU.

    python benchmarks/multi_bird_generation.py [--scenes 10000] [--chunk 512]

Uses the synthetic sprites (no CUB needed; the paste costs the same for CUB sprites) and
prints one row per (device, variant, chunk): scenes per second including backgrounds,
placement, paste and the uint8 conversion, after one warm-up chunk.
"""
from __future__ import annotations

import argparse
import time

import torch

from datamodules.multi_bird import SceneGenerator, colours_for, sprite_banks


def bench(device: str, variant: str, scenes: int, chunk: int) -> float:
    birds, _ = sprite_banks("synthetic", 0)
    gen = SceneGenerator(variant, birds.to(device), colours_for(variant, "train"))
    g = torch.Generator(device=device).manual_seed(0)
    gen(chunk, g)  # warm-up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    for i in range(0, scenes, chunk):
        gen(min(chunk, scenes - i), g)
    sync()
    return scenes / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenes", type=int, default=10_000)
    p.add_argument("--chunk", type=int, nargs="+", default=[512])
    a = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{'device':8} {'variant':8} {'chunk':>6} {'images/s':>12}")
    for dev in devices:
        for variant in ("easy", "hard"):
            for chunk in a.chunk:
                print(f"{dev:8} {variant:8} {chunk:>6} {bench(dev, variant, a.scenes, chunk):>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
