"""Multi-Bird-Easy and Multi-Bird-Hard (paper 1, Sec. 4.1 and Fig. 3): generator and datamodule.

A scene is a 48x48 RGB canvas with 0-5 birds of 14x14 pixels pasted at random places:

* **Easy**: a plain background in one of 8 training colours; the test split uses 4 other colours.
* **Hard**: a two-colour checkerboard (6-pixel cells on a canvas rotated by a uniform angle in
  [-90, 90] degrees) whose two colours are drawn from 6 training colours; the test split
  draws them from 3 other colours. Easy and Hard differ only in the background.

The colour lists, the 6-pixel cells, the rotation range, the 0-5 uniform count and the rule
that two birds overlap by at most 15 % of a sprite's area are read from the authors' own
generator (github 51616/split-vae, ``spair/data.py``). The paper speaks of 6 and 3 *colours*
for Hard (two drawn per image), and so does their code; we follow both.

Splits: ``train`` (training colours, training birds), ``val`` (training colours, held-out
birds) and ``test`` (unseen colours, held-out birds), so counting can be read on seen and on
unseen backgrounds. With CUB the bird split is CUB's own ``train_test_split.txt``.

Sprite sources (one argument, ``sprites``):

* ``cub``: birds cut out of CUB-200-2011 with their segmentation masks (a square crop
  around the bounding box, resized to 14x14, mask thresholded at 0.5).
* ``synthetic``: birds drawn procedurally (body, head, beak, tail, wing, eye; random sizes,
  pose, colours and stripe / spot / speckle textures). They are *not* CUB birds; results on
  them are labelled as synthetic in the README.

Build once with ``python -m datamodules.multi_bird --variant hard --out data/multi_bird_hard``.
A build folder holds, per split, ``{split}_images.npy`` (N, 3, 48, 48) uint8,
``{split}_counts.npy`` (N,) uint8, ``{split}_boxes.npy`` (N, 5, 4) float32 boxes in
pixels, ``(x1, y1, x2, y2)`` with exclusive ends, the first ``count`` rows valid, and
``{split}_birds.npy`` (N, 5) int32, which sprite each bird is (-1: none); the
sprite banks ``sprites_{train,heldout}.npy`` (N, 4, 14, 14) uint8 RGBA; and ``card.json``
(arguments, colours, bird split, sha256 of every file). Same arguments, same bytes.

Scene composition is batched: every bird of every scene is scattered onto its own layer in
one op and the layers are alpha-composited with a reverse cumulative product (later birds
on top), so it runs unchanged on a GPU (``MultiBirdDataModule(on_the_fly=True)``).

The package, one part per file: ``sprites.py`` (CUB cut-outs and procedural birds),
``scenes.py`` (colours, backgrounds, placement, batched composition), ``build.py`` (the
``python -m datamodules.multi_bird`` command) and ``datamodule.py`` (:class:`MultiBirdDataModule`).
"""
from datamodules.multi_bird.build import build, main
from datamodules.multi_bird.datamodule import MultiBirdDataModule, SceneStream
from datamodules.multi_bird.scenes import (
    CANVAS,
    CHECKER_CELL,
    EASY_COLOURS,
    HARD_COLOURS,
    MAX_BIRDS,
    MAX_OVERLAP,
    SPLITS,
    VARIANTS,
    SceneGenerator,
    backgrounds,
    colours_for,
    compose,
    place,
)
from datamodules.multi_bird.sprites import (
    CUB_MD5,
    CUB_URL,
    SEG_URL,
    SPRITE,
    SpriteBank,
    cub_birds,
    ensure_cub,
    sprite_banks,
    synthetic_birds,
)

__all__ = [
    "CANVAS", "CHECKER_CELL", "CUB_MD5", "CUB_URL", "EASY_COLOURS", "HARD_COLOURS", "MAX_BIRDS", "MAX_OVERLAP",
    "SEG_URL", "SPLITS", "SPRITE", "VARIANTS", "MultiBirdDataModule", "SceneGenerator", "SceneStream", "SpriteBank",
    "backgrounds", "build", "colours_for", "compose", "cub_birds", "ensure_cub", "main", "place", "sprite_banks",
    "synthetic_birds",
]
