"""Multi-Bird generator and datamodule, on a tiny CUB-shaped folder and on synthetic birds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import multi_bird as mb
from datamodules.multi_bird import MultiBirdDataModule, build
from splitlab.errors import DataError


def write_cub(root: Path, n: int = 10, seed: int = 0) -> dict[int, tuple[int, int, int]]:
    """Write CUB-200-2011's real layout: images/<class>/<name>.jpg, segmentations/<class>/<name>.png,
    images.txt, bounding_boxes.txt (x y w h), train_test_split.txt. Each bird is a solid-colour
    ellipse on a grey background; returns id -> bird colour."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    base = root / "CUB_200_2011"
    colours, lines, boxes, split = {}, [], [], []
    for i in range(1, n + 1):
        rel = f"{1 + i % 2:03d}.Fake_Bird/Fake_Bird_{i:04d}.jpg"
        w, h = int(rng.integers(60, 90)), int(rng.integers(50, 80))
        x0, y0 = int(rng.integers(2, 15)), int(rng.integers(2, 15))
        bw, bh = int(rng.integers(25, w - x0 - 2)), int(rng.integers(20, h - y0 - 2))
        colour = tuple(int(c) for c in rng.integers(30, 226, size=3))
        img = Image.new("RGB", (w, h), (128, 128, 128))
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).ellipse([x0, y0, x0 + bw - 1, y0 + bh - 1], fill=colour)
        ImageDraw.Draw(mask).ellipse([x0, y0, x0 + bw - 1, y0 + bh - 1], fill=255)
        (base / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "segmentations" / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(base / "images" / rel, quality=95)
        mask.save((root / "segmentations" / rel).with_suffix(".png"))
        lines.append(f"{i} {rel}")
        boxes.append(f"{i} {x0}.0 {y0}.0 {bw}.0 {bh}.0")
        split.append(f"{i} {i % 2}")
        colours[i] = colour
    (base / "images.txt").write_text("\n".join(lines) + "\n")
    (base / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    return colours


def load(folder: Path, split: str) -> dict[str, np.ndarray]:
    return {k: np.load(folder / f"{split}_{k}.npy") for k in ("images", "counts", "boxes", "birds")}


@pytest.fixture(scope="module")
def cub_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("mb")
    colours = write_cub(root / "cub")
    out = root / "easy"
    card = build(out, "easy", "cub", str(root / "cub"), num_train=64, num_val=48, num_test=48, seed=3)
    return root, out, card, colours


def test_cub_sprites_are_the_masked_birds(cub_build):
    _, out, card, colours = cub_build
    assert card["sprites"]["train_ids"] == [1, 3, 5, 7, 9] and card["sprites"]["heldout_ids"] == [2, 4, 6, 8, 10]
    for name, ids in (("sprites_train", card["sprites"]["train_ids"]), ("sprites_heldout", card["sprites"]["heldout_ids"])):
        rgba = np.load(out / f"{name}.npy")
        assert rgba.shape == (len(ids), 4, 14, 14) and rgba.dtype == np.uint8
        for sprite, i in zip(rgba, ids):
            opaque = sprite[3] == 255
            # the ellipse fills the square crop along its longer side: most of the sprite is bird
            assert opaque.mean() > 0.3 and set(np.unique(sprite[3])) <= {0, 255}
            assert (sprite[:3, ~opaque] == 0).all()  # colour is masked out off the bird
            inner = np.median(sprite[:3, opaque], axis=1)
            assert np.abs(inner - np.array(colours[i])).max() <= 6  # the bird's colour (jpeg tolerance)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_pasted_pixels_counts_and_boxes_match_what_was_placed(cub_build, split):
    _, out, card, _ = cub_build
    d = load(out, split)
    bank = np.load(out / ("sprites_train.npy" if split == "train" else "sprites_heldout.npy"))
    colours = np.array(mb.colours_for("easy", split))
    assert d["images"].shape == (card["splits"][split]["images"], 3, 48, 48)
    assert d["counts"].max() <= 5 and len(np.unique(d["counts"])) > 3
    for img, n, boxes, birds in zip(d["images"], d["counts"], d["boxes"], d["birds"]):
        assert (birds[:n] >= 0).all() and (birds[n:] == -1).all() and (boxes[n:] == 0).all()
        covered = np.zeros((48, 48), bool)
        for k in reversed(range(n)):  # the last bird is on top
            s = bank[birds[k]]
            a = s[3] == 255
            ys, xs = np.nonzero(a)
            x1, y1, x2, y2 = boxes[k]
            # the box is the tight box of the bird's opaque pixels, in image pixels
            cx, cy = int(x1) - xs.min(), int(y1) - ys.min()
            assert (x2 - x1, y2 - y1) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert 0 <= cx <= 34 and 0 <= cy <= 34
            for y, x in zip(ys + cy, xs + cx):
                if not covered[y, x]:
                    assert (img[:, y, x] == s[:3, y - cy, x - cx]).all()
            vis = np.zeros((48, 48), bool)
            vis[cy:cy + 14, cx:cx + 14] = a
            covered |= vis
        bg = img[:, ~covered].T
        # the background is one plain colour of this split's list
        assert len(np.unique(bg, axis=0)) <= 1
        if len(bg):
            assert (np.abs(colours - bg[0]).sum(1) == 0).any()


def test_easy_and_hard_differ_only_in_background_and_test_colours_are_unseen(tmp_path):
    cards, data = {}, {}
    for v in ("easy", "hard"):
        cards[v] = build(tmp_path / v, v, "synthetic", num_train=16, num_val=16, num_test=64, seed=1)
        data[v] = load(tmp_path / v, "test")
    e, h = data["easy"], data["hard"]
    for k in ("counts", "boxes", "birds"):
        assert np.array_equal(e[k], h[k])
    bank = np.load(tmp_path / "easy" / "sprites_heldout.npy")
    opaque_anywhere = (e["images"] != h["images"]).any(1)
    # pixels of a bird are the same in both: wherever the images differ no bird is visible
    bird_pix = np.zeros_like(opaque_anywhere)
    for i, (n, boxes, birds) in enumerate(zip(e["counts"], e["boxes"], e["birds"])):
        for k in range(n):
            s = bank[birds[k]][3] == 255
            ys, xs = np.nonzero(s)
            cx, cy = int(boxes[k][0]) - xs.min(), int(boxes[k][1]) - ys.min()
            bird_pix[i, ys + cy, xs + cx] = True
    assert not (opaque_anywhere & bird_pix).any()
    train = {tuple(c) for c in mb.HARD_COLOURS["train"]} | {tuple(c) for c in mb.EASY_COLOURS["train"]}
    for v in ("easy", "hard"):
        test_cols = {tuple(c) for c in cards[v]["splits"]["test"]["colours"]}
        assert not test_cols & {tuple(c) for c in cards[v]["splits"]["train"]["colours"]}
        imgs = data[v]["images"]
        for i in range(len(imgs)):
            px = imgs[i][:, ~bird_pix[i]].T
            cols, freq = np.unique(px, axis=0, return_counts=True)
            top = {tuple(int(c) for c in cols[j]) for j in np.argsort(-freq)[: (1 if v == "easy" else 2)]}
            assert top <= test_cols and not top & train  # the dominant background colours are unseen ones
            if v == "hard":
                assert len(top) == 2


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(num_train=32, num_val=8, num_test=8)
    a = build(tmp_path / "a", "hard", "synthetic", seed=5, **kw)
    b = build(tmp_path / "b", "hard", "synthetic", seed=5, **kw)
    c = build(tmp_path / "c", "hard", "synthetic", seed=6, **kw)
    assert a["sha256"] == b["sha256"]
    assert (tmp_path / "a" / "card.json").read_bytes() == (tmp_path / "b" / "card.json").read_bytes()
    for name in a["sha256"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["sha256"]["train_images.npy"] != c["sha256"]["train_images.npy"]


def test_card_records_split_colours_seed_and_sizes(cub_build):
    _, out, card, _ = cub_build
    on_disk = json.loads((out / "card.json").read_text())
    assert on_disk == card
    assert card["args"] == {"variant": "easy", "sprites": "cub", "num_train": 64, "num_val": 48, "num_test": 48, "seed": 3}
    assert len(card["splits"]["train"]["colours"]) == 8 and len(card["splits"]["test"]["colours"]) == 4
    assert card["splits"]["val"]["colours"] == card["splits"]["train"]["colours"]


def test_missing_cub_says_where_to_put_the_archives(tmp_path, capsys):
    with pytest.raises(DataError, match=r"CUB_200_2011\.tgz.*segmentations\.tgz.*download: true.*synthetic"):
        build(tmp_path / "out", "easy", "cub", str(tmp_path / "nocub"), num_train=4, num_val=4, num_test=4)
    rc = mb.main(["--variant", "easy", "--out", str(tmp_path / "o"), "--cub-root", str(tmp_path / "nocub")])
    assert rc == 2 and "CUB_200_2011.tgz" in capsys.readouterr().err


def test_command_line_builds_synthetic(tmp_path, capsys):
    rc = mb.main(["--variant", "hard", "--sprites", "synthetic", "--out", str(tmp_path / "h"),
                  "--num-train", "20", "--num-val", "10", "--num-test", "10"])
    assert rc == 0 and "Multi-Bird-Hard" in capsys.readouterr().out
    assert np.load(tmp_path / "h" / "train_images.npy").shape == (20, 3, 48, 48)


def test_synthetic_birds_vary():
    bank = mb.synthetic_birds(200, torch.Generator().manual_seed(0))
    a = bank.rgba[:, 3] > 0
    assert 0.15 < a.float().mean() < 0.5
    mean_col = (bank.rgba[:, :3].float().sum((2, 3)) / a.sum((1, 2)).unsqueeze(1))
    assert mean_col.std(0).min() > 25  # many colours
    assert a.sum((1, 2)).float().std() > 5  # many sizes / shapes
    assert len({tuple(x.flatten().tolist()) for x in a}) == 200  # no two silhouettes alike


# ----------------------------------------------------------------------------- datamodule
@pytest.fixture
def dm_kwargs(tmp_path):
    return dict(variant="easy", sprites="synthetic", root=str(tmp_path / "mb"), num_train=40, num_val=12,
                num_test=12, batch_size=8, seed=0)


def test_datamodule_builds_then_serves_count_and_boxes(dm_kwargs):
    dm = MultiBirdDataModule(**dm_kwargs)
    dm.prepare_data()
    dm.setup("fit")
    b = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(b) == {"image", "label", "index", "count", "boxes", "boxes_mask"}
    assert b["image"].shape == (8, 3, 48, 48) and b["image"].dtype == torch.float32
    assert torch.equal(b["boxes_mask"].sum(1), b["count"]) and torch.equal(b["label"], b["count"])
    assert (b["boxes"][~b["boxes_mask"]] == 0).all()
    assert len(dm.val_set) == 12 and len(dm.test_set) == 12
    vb = next(iter(dm.val_dataloader()))
    assert vb["count"].dtype == torch.long


def test_on_the_fly_batches_are_fresh_and_reproducible(dm_kwargs):
    dm = MultiBirdDataModule(**dm_kwargs, on_the_fly=True, steps_per_epoch=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 3 and "train" not in dm.splits
    first = [b["image"].clone() for b in loader]
    again = [b["image"].clone() for b in loader]
    loader.set_epoch(1)
    other = next(iter(loader))
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], other["image"]) and not torch.equal(first[0], first[1])
    assert torch.equal(other["boxes_mask"].sum(1), other["count"])


def test_a_second_run_waits_for_the_build_in_progress_instead_of_writing_over_it(dm_kwargs):
    """Two runs started side by side on an empty folder (fig8.py, one per model) build it once: the second waits."""
    import threading

    from filelock import FileLock

    lock = FileLock(dm_kwargs["root"] + ".lock")
    lock.acquire()  # as if another process were building
    dm = MultiBirdDataModule(**dm_kwargs)
    t = threading.Thread(target=dm.prepare_data)
    t.start()
    t.join(timeout=1.0)
    assert t.is_alive() and not Path(dm_kwargs["root"]).exists()  # the build (whose first act is mkdir) has not begun
    lock.release()
    t.join(timeout=60)
    assert not t.is_alive() and (Path(dm_kwargs["root"]) / "card.json").exists()
    dm.setup("fit")
    assert len(dm.val_set) == 12


def test_other_arguments_than_the_build_are_refused(dm_kwargs):
    MultiBirdDataModule(**dm_kwargs).prepare_data()
    dm = MultiBirdDataModule(**(dm_kwargs | {"variant": "hard"}))
    with pytest.raises(DataError, match="different Multi-Bird build.*variant"):
        dm.setup("fit")


def test_no_build_and_no_permission_to_build(dm_kwargs):
    dm = MultiBirdDataModule(**dm_kwargs, build_if_missing=False)
    with pytest.raises(DataError, match="python -m datamodules.multi_bird --variant easy --sprites synthetic"):
        dm.setup("fit")


def test_corrupt_file_is_reported_and_kept(dm_kwargs):
    MultiBirdDataModule(**dm_kwargs).prepare_data()
    path = Path(dm_kwargs["root"]) / "val_images.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-100] + bytes(100))
    with pytest.raises(DataError, match="sha256.*build it again"):
        MultiBirdDataModule(**dm_kwargs).setup("fit")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt|sha256"):
        MultiBirdDataModule(**dm_kwargs).setup("fit")
    assert path.exists()
