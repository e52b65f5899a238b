"""`lightning predict` writes the latents of a split into the run folder: equal to `model.encode`, and the same file
from a 2-process DDP run as from one process (the ranks' parts merged in dataset order)."""
from __future__ import annotations

import pytest
import torch

import splitlab
from lightning_modules.nn.aux_transforms import keyed_by_image
from tests.conftest import cli, run_cli, run_of

SMALL = ["--config", "configs/quickstart.yaml", "--trainer.logger=false", "--trainer.accelerator=cpu",
         "--data.init_args.copies=1", "--data.init_args.eval_copies=1", "--data.init_args.eval_batch_size=1",
         "--trainer.callbacks=[]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("latents") / "quickstart"
    r = cli(["fit", *SMALL, f"--trainer.default_root_dir={root}", "--trainer.max_steps=2",
             "--trainer.limit_val_batches=0"])
    assert r.returncode == 0, r.stderr[-3000:]
    r = cli(["predict", *SMALL, f"--trainer.default_root_dir={root}", "--ckpt_path=last"])
    assert r.returncode == 0, r.stderr[-3000:]
    return run_of(root)


@pytest.mark.slow
def test_predict_writes_the_latents_that_encode_gives(trained):
    latents = torch.load(trained / "latents_test.pt", weights_only=True)
    model = splitlab.load(trained)
    dm = model.run.datamodule(eval_batch_size=1)
    dm.setup("test")
    n = len(dm.test_set)
    assert len(latents["index"]) == n and torch.equal(latents["index"], torch.arange(n))  # every image once, in order
    assert torch.equal(latents["label"], dm.test_set.labels)
    x = dm.test_set.images[:16].float() / 255
    with torch.no_grad(), keyed_by_image(torch.arange(16)):  # the shuffle behind z_l, keyed by each image's index
        enc = model.encode(x)
    for key in ("z_g", "z_l"):
        assert torch.allclose(latents[key][:16], enc[key], atol=1e-5), key
    assert "reconstruction" not in latents  # images are kept out unless asked for


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_ddp_predict_writes_the_same_file(trained):
    one = torch.load(trained / "latents_test.pt", weights_only=True)
    r = run_cli(["predict", *SMALL, f"--trainer.default_root_dir={trained.parent}", f"--run={trained.name}",
                 "--ckpt_path=last", "--trainer.devices=2", "--trainer.strategy=ddp"])
    assert r.returncode == 0, r.stderr[-3000:]
    two = torch.load(trained / "latents_test.pt", weights_only=True)
    assert one.keys() == two.keys() and torch.equal(one["index"], two["index"])
    for key in one:
        assert torch.allclose(one[key].float(), two[key].float(), atol=1e-5), key
    assert not list(trained.glob("latents_test.pt.rank*"))  # the parts are merged and removed


def test_keyed_shuffles_are_per_image_permutations_independent_of_the_batch():
    from lightning_modules.nn.aux_transforms import PatchShuffle

    x = torch.rand(4, 3, 8, 8)
    shuffle = PatchShuffle(1)
    with keyed_by_image(torch.tensor([0, 1, 2, 3])):
        a = shuffle(x)
    with keyed_by_image(torch.tensor([2, 3])):
        b = shuffle(x[2:])
    assert torch.equal(a[2:], b)  # image 2 and 3: the same shuffle in another batch
    flat = lambda t: t.flatten(1).sort(dim=1).values  # noqa: E731
    assert torch.equal(flat(a), flat(x)) and not torch.equal(a, x)  # a permutation of each image's pixels
    same = x[:1].expand(2, -1, -1, -1)
    with keyed_by_image(torch.tensor([5, 6])):
        c = shuffle(same)
    assert not torch.equal(c[0], c[1])  # two images, two different shuffles
    assert not torch.equal(shuffle(x), shuffle(x))  # outside the block: fresh draws from the RNG stream
