import torch

from datamodules.base import DeviceBatches, UnrepeatedDistributedSampler
from datamodules.digits import ColouredDigitsDataModule


def test_splits_shapes_and_unseen_digits():
    dm = ColouredDigitsDataModule(copies=2, eval_copies=1, val_digits=100, test_digits=100)
    dm.setup()
    assert dm.train_set.images.shape == (2 * 1597, 3, 32, 32)
    assert len(dm.val_set) == 100 and len(dm.test_set) == 100
    # every colouring of one digit has the same mask: same digit at index i and i + N
    n = 1597
    a, b = dm.train_set.images[0].float(), dm.train_set.images[n].float()
    assert dm.train_set.labels[0] == dm.train_set.labels[n] and not torch.equal(a, b)
    assert set(dm.train_set.labels.tolist()) == set(range(10))


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (ColouredDigitsDataModule(copies=1, seed=s) for s in (0, 0, 1))
    for d in (a, b, c):
        d.setup()
    assert torch.equal(a.train_set.images, b.train_set.images)
    assert not torch.equal(a.train_set.images, c.train_set.images)


def test_device_batches_cover_each_sample_once_per_epoch_across_ranks():
    t = {"image": torch.arange(100).view(100, 1), "label": torch.arange(100)}
    seen = []
    for rank in range(2):
        it = DeviceBatches(t, batch_size=10, shuffle=True, drop_last=True, seed=3, rank=rank, world_size=2)
        assert len(it) == 5
        seen += [b["label"] for b in it]
    seen = torch.cat(seen)
    assert len(seen) == 100 and len(seen.unique()) == 100


def test_unrepeated_sampler_does_not_pad():
    ds = list(range(7))
    parts = [list(UnrepeatedDistributedSampler(ds, 2, r)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == ds


def test_device_batches_order_depends_on_the_epoch_lightning_sets():
    from lightning_fabric.utilities.data import _set_sampler_epoch  # what Lightning calls each epoch

    t = {"image": torch.arange(40).view(40, 1), "label": torch.arange(40)}
    d = DeviceBatches(t, 8, shuffle=True, drop_last=True, seed=1)
    orders = {}
    for epoch in (0, 1, 0):
        _set_sampler_epoch(d, epoch)
        orders.setdefault(epoch, []).append(torch.cat([b["label"] for b in d]).tolist())
    assert orders[0][0] == orders[0][1]  # a resumed epoch 0 repeats epoch 0
    assert orders[0][0] != orders[1][0]


def test_every_split_serves_its_colours_deterministically():
    """`colour` = foreground RGB then background RGB in [0, 1]: the corner pixel is the background,
    the pixel farthest from it the foreground; the same numbers on every build."""
    import torch

    from datamodules.digits import ColouredDigitsDataModule

    a, b = ColouredDigitsDataModule(copies=1, eval_copies=1), ColouredDigitsDataModule(copies=1, eval_copies=1)
    a.setup("fit")
    b.setup("fit")
    for split in ("train", "val", "test"):
        ds = a.splits[split]
        c = ds.extras["colour"]
        assert c.shape == (len(ds), 6) and c.min() >= 0 and c.max() <= 1
        assert torch.equal(c, b.splits[split].extras["colour"])
        x = ds.images.float() / 255
        assert torch.allclose(x[:, :, 0, 0], c[:, 3:], atol=0.5 / 255)  # background
        far = (x - c[:, 3:, None, None]).pow(2).sum(1).flatten(1).argmax(1)
        fg_pixel = x.flatten(2)[torch.arange(len(x)), :, far]
        err = (fg_pixel - c[:, :3]).abs().amax(1)  # the digit's core is the foreground colour
        assert err.median() < 0.02 and err.quantile(0.95) < 0.1  # (faint digits never reach full ink after upsampling)
        batch = ds.__getitems__([0, 1])
        assert torch.equal(batch["colour"], c[:2])
