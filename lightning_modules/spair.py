"""SPAIR and SPLIT-SPAIR with a background model (paper 1, Sec. 2.3 and 4.4, Fig. 2, 8, 9).

SPAIR (Crawford & Pineau, AAAI 2019) explains an image as objects on a grid of G x G cells
plus, as in paper 1, a background from its own encoder/decoder. Each cell ``i`` has

* ``z_where`` (4): box size logits (w, h) and centre offsets (x, y). The box of cell (r, c)
  in image fractions is ``w = max_scale * sigmoid(z_where[0])``,
  ``cx = (c + 0.5 + max_shift * tanh(z_where[2])) / G`` (same for h, cy with rows): a box
  can be up to ``max_scale`` of the image and its centre can move ``max_shift`` cells.
* ``z_what`` (D): appearance, from a glimpse encoder on the spatial-transformer crop of the box.
* ``z_depth`` (1): which object is in front where two overlap.
* ``z_pres`` (1): present or not, a relaxed Bernoulli (binary concrete, temperature tau).

The glimpse decoder turns ``z_what`` (SPLIT: ``[z_what, z_l]``, paper 1 Fig. 2) into an
appearance and an alpha map, pasted back into the box; objects are composed by
depth-weighted alpha (``importance = z_pres * alpha * (sigmoid(-z_depth) + 0.5)``) over the
background ``p(x_bg | z_bg)``. Loss = negative ELBO::

    recon    = -log p(x | z)                                     (Bernoulli / BCE, as the authors)
    kl_what  = KL(q(z_what | glimpse) || N(0, I))                 summed over cells
    kl_where = KL(q(z_where) || p(z_where)); size prior N(mu_t, 0.5^2), mu_t annealed 10 -> 0
    kl_depth = KL(q(z_depth) || N(0, 1))
    kl_pres  = log q(z_pres) - log p(z_pres | count prior)        (binary-concrete densities)
    kl_bg    = KL(q(z_bg | x) || N(0, I))
    loss = recon + beta * (z_what_beta kl_what + kl_where + kl_depth + z_pres_beta kl_pres) + z_bg_beta kl_bg
           [+ aux_recon + z_l_beta kl_l with a LocalBranch]
           [+ the warm-ups and the presence credit below, beyond both papers, each off by default]

The count prior is SPAIR's: a geometric distribution over the number of objects with success
probability annealed from 0 to ``z_pres_prior_prob`` over ``z_pres_anneal_steps`` (so the
model does not switch every cell on), spread uniformly over which cells are on. The prior of
cell ``i`` given the earlier cells' decisions is computed for all cells at once in closed
form (``count_prior_log_odds``), not by a loop.

By default all cells are inferred in one pass, as the authors' TensorFlow code does
(spair/spair.py:406-489). ``sequential: true`` is SPAIR's own inference: cells in raster order,
each also seeing the sampled latents of its already-decided neighbours (left, up-left, up,
up-right); that loop over G*G cells, batched over images, is the only loop. Every default is the
authors' value (github 51616/split-vae, ``spair/main.py`` and ``spair/spair.py``, lines in the
argument list), so a config lists only what it changes. What each option beyond the papers
did in our runs is in docs/fig8.md.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.base import (
    LRSchedulerCallable,
    OptimizerCallable,
    RepresentationModule,
    check_choice,
    check_positive,
)
from lightning_modules.nn.background import COLOUR_DIMS, ColourPathDecoder, ColourPathEncoder
from lightning_modules.nn.distributions import Bernoulli, FixedGaussian, gaussian_kl_std_normal, reparameterize
from lightning_modules.nn.glimpse import box_to_xyxy, crop, paste_sum
from lightning_modules.nn.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, glorot_init_
from lightning_modules.nn.objects import (  # noqa: F401  (count_prior_log_odds etc. are imported from here too)
    _ClipInward,
    alpha_extent,
    concrete_log_density,
    count_prior_log_odds,
    gaussian_kl,
)
from lightning_modules.split import LocalBranch
from splitlab.errors import ConfigError

N_WHERE = 4
# neighbours whose latents a cell sees in sequential mode: (d_row, d_col), all decided before it
NEIGHBOURS = ((0, -1), (-1, -1), (-1, 0), (-1, 1))


class SPAIR(RepresentationModule):
    """SPAIR with a background model; SPLIT-SPAIR when given a ``local_branch``.

    Args:
        image_size, channels: scene shape (Multi-Bird: 48, 3).
        grid_size: G, cells per side (authors: 4 on 48x48, 12-pixel cells; the backbone strides 2, 2, 3,
            spair/spair.py:381-383, its last conv 4x4 'SAME', a 22-px receptive field).
        glimpse_size: side of the glimpse crops (authors' ``object_size``: 32, main.py:28).
        z_what_dim: D of z_what (authors' ``latent_size``: 128).
        z_bg_dim: size of z_bg (authors' ``bg_latent_size``: 4).
        backbone_width, feature_dim: channels of the backbone and of its per-cell features.
        max_scale: largest box side as a fraction of the image (authors: 0.5).
        max_shift: how far a box centre can move from its cell centre, in cells (authors: 1).
        tau: binary-concrete temperature of z_pres (authors: 0.8, main.py:27).
        beta: weight of the object KLs (authors: 0.5, main.py:21). z_what_beta: extra weight of kl_what (0.1,
            main.py:40).
        z_bg_beta: weight of kl_bg (authors: 10 for plain backgrounds, 4 for checkerboards).
        z_l_beta: weight of kl_l (authors' ``-split_z_l``: 0.1, main.py:39; spair/trainer.py:190-199).
        z_pres_beta: extra weight of kl_pres (authors: 1, with Bernoulli pixels). It sets what one more object costs
            against what it buys in reconstruction; with Gaussian pixels (``recon_sigma``) the reconstruction gains grow
            several-fold and this weight should follow (beyond both papers).
        z_pres_prior_prob, z_pres_anneal_steps: count prior (authors: 0.99, spair/trainer.py:150, over 10,000 steps,
            main.py:32).
        size_prior_mean, size_prior_start, size_prior_std: prior of the size logits, its mean annealed from ``start`` to
            ``mean`` over the same steps (authors: 0, 10, 0.5; main.py:33-34).
        sequential: SPAIR's cell-by-cell inference; ``False`` (authors, spair/spair.py:406-489): all cells in parallel.
        where_logvar_init: initial log-variance of q(z_where) (bias of its head).
        recon_sigma: ``None``: Bernoulli (binary cross-entropy) pixels, as the authors; a number: Gaussian pixels with
            this fixed standard deviation. The SPLIT branch scores x_hat with the same likelihood (the authors use BCE
            for both, spair/trainer.py:148, 194).
        colour_noise: std of Gaussian noise on object colours in training (authors' Renderer: 0.01, spair/spair.py:539,
            567).
        background: ``conv`` (the authors' BackgroundModel, spair/spair.py:29-30) or ``dense`` (their ``-dense_bg`` MLP,
            1024-500 / 500-1024, spair/spair.py:69-74; used by their SPLIT-SPAIR runs).
        object_input: what the cells' backbone sees: ``image`` (paper 1) or ``residual``, the image minus the
            background's posterior mean (beyond both papers).
        background_colour: ``deep`` (paper 1: the colour comes out of the background's networks) or ``linear``
            (beyond both papers: three more z_bg dimensions carry the colour on a linear path that reaches unseen
            colours, :mod:`lightning_modules.nn.background`). In training that path fades in over
            ``object_warmup_steps`` (weight 0 -> 1), so the cells switch on and learn the birds first: at full
            weight from the start the background explains every scene and no cell ever switches on (measured).
        glimpse_hidden: width of a dense layer in the glimpse encoder and decoder (``None``: the authors' ``2 *
            z_what_dim``, spair/spair.py:253, 348; 0: none).
        upsample: ``bilinear`` (authors: tf.image.resize, spair/spair.py:360, 362) or ``nearest`` in the conv decoders.
        init: ``glorot`` (Keras' default, the authors') or ``torch`` (PyTorch's default init).
        pres_clip: how z_pres logits are kept in [-10, 10]: ``hard`` (the authors' ``tf.clip_by_value``,
            spair/spair.py:467: no gradient beyond the bounds, so a cell pushed below -10 never comes back) or
            ``straight_through`` (the same forward values; beyond the bound the gradient passes when it points back
            inside, so an off cell can come back; beyond both papers).
        detect_boxes: what :meth:`detect` reports as an object's box: ``alpha`` (the extent of its decoded alpha map) or
            ``box`` (its ``z_where`` box).
        object_warmup_steps: for this many steps add a reconstruction with every cell drawn, weighted 1 -> 0: the
            glimpse nets learn to draw what lies in their boxes whatever z_pres says (beyond both papers; 0: off).
        background_warmup_steps: for this many steps add a reconstruction by the background alone, weighted 1 -> 0:
            it learns the scene's pattern (Hard's checkerboard) even while the cells cover it (beyond both papers; 0: off).
        background_warmup_hold: while over half of the batch's cells are on, that weight stays at least this, also after
            ``background_warmup_steps``: the background's posterior does not collapse at the all-on start (beyond both
            papers; 0: off; tested on device, no host sync).
        pres_credit: weight of a leave-one-out credit for presence (:meth:`credit`; 0: off; beyond both papers): one
            present cell per image is switched off (hard presences); where the loss prefers it off, its logit is pushed
            off in proportion, so a second box on one object goes and a box on its object stays. One extra render a step.
        pres_credit_start: training step from which ``pres_credit`` applies; start it once the cells have left the
            all-on start (e.g. after ``background_warmup_steps``).
        local_branch: the SPLIT branch; ``None`` for SPAIR.
        concat_z_what / concat_z_bg: where z_l goes (the authors' ``-concat_z_what``, README.md:93 / 107; paper 1 Fig.
            2: the glimpse decoder only). ``concat_z_bg`` is off in every authors' run: their model reads
            ``config.concat_z_bg``, which main.py never defines (it has ``-concat_bg``, main.py:48).
    """

    # NCHW: NHWC gave no clear gain here (docs/speed.md)
    memory_format = torch.contiguous_format

    def __init__(
        self,
        image_size: int = 48,
        channels: int = 3,
        grid_size: int = 4,
        glimpse_size: int = 32,
        z_what_dim: int = 128,
        z_bg_dim: int = 4,
        backbone_width: int = 128,
        feature_dim: int = 100,
        glimpse_widths: tuple[int, ...] = (32, 64),
        max_scale: float = 0.5,
        max_shift: float = 1.0,
        tau: float = 0.8,
        beta: float = 0.5,
        z_what_beta: float = 0.1,
        z_bg_beta: float = 10.0,
        z_l_beta: float = 0.1,
        z_pres_beta: float = 1.0,
        z_pres_prior_prob: float = 0.99,
        z_pres_anneal_steps: int = 10_000,
        size_prior_mean: float = 0.0,
        size_prior_start: float = 10.0,
        size_prior_std: float = 0.5,
        sequential: bool = False,
        recon_sigma: float | None = None,
        where_logvar_init: float = -4.0,
        colour_noise: float = 0.01,
        background: str = "conv",
        background_colour: str = "deep",
        object_input: str = "image",
        glimpse_hidden: int | None = None,
        upsample: str = "bilinear",
        init: str = "glorot",
        pres_clip: str = "hard",
        detect_boxes: str = "alpha",
        object_warmup_steps: int = 0,
        background_warmup_steps: int = 0,
        background_warmup_hold: float = 0.0,
        pres_credit: float = 0.0,
        pres_credit_start: int = 0,
        local_branch: LocalBranch | None = None,
        concat_z_what: bool = True,
        concat_z_bg: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, compile=compile)
        self.save_init_args(["local_branch", "optimizer", "lr_scheduler"])
        for name in ("beta", "z_what_beta", "z_bg_beta", "z_l_beta", "z_pres_beta", "tau", "size_prior_std", "max_scale"):
            check_positive(name, locals()[name], f"model.init_args.{name}", allow_zero=name.endswith("beta"))
        if image_size % grid_size or (image_size // grid_size) % 4:
            raise ConfigError(
                f"grid_size={grid_size} must divide image_size={image_size} into cells whose side is a multiple "
                "of 4 (the backbone halves twice, then strides one cell); authors: 4 cells on 48x48."
            )
        if glimpse_size % 4:
            raise ConfigError(f"glimpse_size must be a multiple of 4, got {glimpse_size}; set `model.init_args.glimpse_size`.")
        for name, value, allowed in (("background", background, ("conv", "dense")), ("init", init, ("torch", "glorot")),
                                     ("pres_clip", pres_clip, ("hard", "straight_through")),
                                     ("detect_boxes", detect_boxes, ("alpha", "box")),
                                     ("background_colour", background_colour, ("deep", "linear")),
                                     ("object_input", object_input, ("image", "residual"))):
            check_choice(name, value, allowed)
        check_positive("pres_credit", pres_credit, "model.init_args.pres_credit", allow_zero=True)
        self.pres_credit, self.pres_credit_start = pres_credit, pres_credit_start
        if not 0 <= z_pres_prior_prob < 1:
            raise ConfigError(f"z_pres_prior_prob must be in [0, 1), got {z_pres_prior_prob}.")
        self.image_size, self.channels, self.G = image_size, channels, grid_size
        self.N = grid_size * grid_size
        self.g, self.D, self.z_bg_dim = glimpse_size, z_what_dim, z_bg_dim
        self.max_scale, self.max_shift, self.tau = max_scale, max_shift, tau
        self.beta, self.z_what_beta, self.z_bg_beta, self.z_l_beta = beta, z_what_beta, z_bg_beta, z_l_beta
        self.z_pres_beta = z_pres_beta
        self.z_pres_prior_prob, self.z_pres_anneal_steps = z_pres_prior_prob, max(1, z_pres_anneal_steps)
        self.size_prior = (size_prior_mean, size_prior_start, size_prior_std)
        self.sequential = sequential
        if recon_sigma is not None:
            check_positive("recon_sigma", recon_sigma, "model.init_args.recon_sigma")
        self.recon_sigma = recon_sigma
        self.local_branch = local_branch
        self.concat_z_what, self.concat_z_bg = concat_z_what, concat_z_bg
        self.likelihood = Bernoulli() if recon_sigma is None else FixedGaussian(recon_sigma)
        self.colour_noise = colour_noise
        self.pres_clip, self.detect_boxes = pres_clip, detect_boxes
        for name, value in (("object_warmup_steps", object_warmup_steps), ("background_warmup_steps", background_warmup_steps)):
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}; set `model.init_args.{name}` to 0 (off) or a "
                                  "number of steps.")
        self.object_warmup_steps, self.background_warmup_steps = object_warmup_steps, background_warmup_steps
        if not 0.0 <= background_warmup_hold <= 1.0:
            raise ConfigError(f"background_warmup_hold must be in [0, 1], got {background_warmup_hold}; set "
                              "`model.init_args.background_warmup_hold` to 0 (off) or a weight such as 0.25.")
        self.background_warmup_hold = background_warmup_hold
        glimpse_hidden = 2 * z_what_dim if glimpse_hidden is None else glimpse_hidden
        z_l_dim = 0
        if local_branch is not None:
            local_branch.build(channels, image_size, self.likelihood)
            z_l_dim = local_branch.z_l_dim

        w = backbone_width
        cell = image_size // grid_size
        # backbone (authors: conv 4x4/2, 4x4/2, then 4x4 stride 3 to 4x4 cells, spair/spair.py:383; 1x1 convs 128, 128, 100)
        stride = cell // 4
        k = max(4, stride)
        pad = k - stride  # TF 'SAME' padding: the authors' 4x4/3 conv gets one far-edge row/column
        cell_conv = [nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))] if pad else []
        self.backbone = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.ReLU(), nn.Conv2d(w, w, 4, 2, 1), nn.ReLU(),
            *cell_conv, nn.Conv2d(w, w, k, stride), nn.ReLU(),
            nn.Conv2d(w, w, 1), nn.ReLU(), nn.Conv2d(w, w, 1), nn.ReLU(), nn.Conv2d(w, feature_dim, 1), nn.ReLU(),
        )
        f = feature_dim
        self.ctx_dim = len(NEIGHBOURS) * (N_WHERE + 2 + z_what_dim) if sequential else 0
        fc = f + self.ctx_dim
        self.where_head = nn.Sequential(nn.Linear(fc, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 2 * N_WHERE))
        # start with small posterior noise on the boxes (authors: sigma = softplus(. - 1) ~ 0.3), so the
        # glimpses are sharp enough for the object path to learn before the count prior bites
        self.what_encoder = ConvEncoder(channels, glimpse_size, z_what_dim, glimpse_widths, (3,) * len(glimpse_widths),
                                        hidden=glimpse_hidden)
        self.depth_head = nn.Sequential(nn.Linear(fc + N_WHERE + z_what_dim, 64), nn.ReLU(), nn.Linear(64, 2))
        self.pres_head = nn.Sequential(nn.Linear(fc + N_WHERE + z_what_dim + 1, 64), nn.ReLU(), nn.Linear(64, 1))
        dec_in = z_what_dim + (z_l_dim if concat_z_what else 0)
        self.what_decoder = ConvDecoder(dec_in, channels + 1, glimpse_size, tuple(reversed(glimpse_widths)),
                                        (3,) * len(glimpse_widths), 3, hidden=glimpse_hidden, upsample=upsample,
                                        fuse_upsample=True)
        # background model (paper 1 Sec. 4.4): x -> z_bg -> background image
        bg_in = z_bg_dim + (z_l_dim if concat_z_bg else 0)
        if background == "dense":  # authors' -dense_bg: ImageEncoderDense / ImageDecoderDense
            self.bg_encoder: nn.Module = MLPEncoder(channels, image_size, z_bg_dim)
            self.bg_decoder: nn.Module = MLPDecoder(bg_in, channels, image_size)
        else:  # authors' BackgroundModel: 3 strided 3x3 convs; dense -> (H/8)^2 x 128, 3 conv + resize stages
            self.bg_encoder = ConvEncoder(channels, image_size, z_bg_dim, (32, 64, 128), (3, 3, 3))
            self.bg_decoder = ConvDecoder(bg_in, channels, image_size, (128, 64, 32), (3, 3, 3), 3, upsample=upsample,
                                          fuse_upsample=True)
        self.z_l_dim = z_l_dim
        # cell centres in image fractions, raster order: (N, 2) as (x, y)
        rc = torch.stack(torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij"), -1).view(-1, 2)
        self.register_buffer("cell_xy", torch.flip(rc, [-1]).float(), persistent=False)
        if init == "glorot":
            glorot_init_(self)
        self.object_input = object_input
        if background_colour == "linear":  # after the init above: its linear maps start at the identity
            self.bg_encoder, self.bg_decoder = ColourPathEncoder(self.bg_encoder), ColourPathDecoder(self.bg_decoder)
            self.z_bg_dim = z_bg_dim + COLOUR_DIMS
        nn.init.constant_(self.where_head[-1].bias[N_WHERE:], where_logvar_init)

    @property
    def is_split(self) -> bool:
        return self.local_branch is not None

    # ------------------------------------------------------------------ geometry
    def boxes(self, z_where: Tensor, cell_xy: Tensor | None = None) -> Tensor:
        """(B, K, 4) z_where of the cells at ``cell_xy`` (K, 2) (default: all N) -> (B, K, 4)
        boxes ``(cx, cy, w, h)`` as image fractions (module doc)."""
        cell_xy = self.cell_xy if cell_xy is None else cell_xy
        size = self.max_scale * torch.sigmoid(z_where[..., :2].float())
        centre = (cell_xy + 0.5 + self.max_shift * torch.tanh(z_where[..., 2:].float())) / self.G
        return torch.cat([centre, size], -1)

    # ------------------------------------------------------------------ inference
    def _features(self, x: Tensor, z_l: Tensor | None) -> Tensor:
        """x: (B, C, H, W) -> per-cell features (B, N, F) in raster order."""
        if self.object_input == "residual":  # what the background leaves unexplained (its posterior mean, no gradient)
            with torch.no_grad():
                x = x - self._background(x, z_l, sample=False)[0]
        return self.backbone(x).flatten(2).transpose(1, 2)

    def _cells(self, x: Tensor, feat: Tensor, ctx: Tensor, cell_xy: Tensor, sample: bool) -> dict[str, Tensor]:
        """Infer the latents of K cells of each image at once.

        Args:
            x: (B, C, H, W) images. feat: (B, K, F) cell features. ctx: (B, K, ctx_dim).
            cell_xy: (K, 2) grid positions (column, row) of the cells.
        Returns:
            dict of (B, K, .) tensors: where_mu/logvar, z_where, what_mu/logvar, z_what,
            depth_mu/logvar, z_depth, pres_logits, y (pre-sigmoid sample), z_pres.
        """
        b, k = feat.shape[:2]
        h = torch.cat([feat, ctx], -1)
        where_mu, where_logvar = self.where_head(h).chunk(2, -1)
        where_logvar = where_logvar.clamp(-10, 4)
        z_where = reparameterize(where_mu, where_logvar) if sample else where_mu
        glimpses = crop(x, self.boxes(z_where, cell_xy), self.g)  # (B, K, C, g, g)
        what_mu, what_logvar = self.what_encoder(glimpses.reshape(b * k, *glimpses.shape[2:]))
        what_mu, what_logvar = what_mu.view(b, k, -1), what_logvar.view(b, k, -1)
        z_what = reparameterize(what_mu, what_logvar) if sample else what_mu
        h = torch.cat([h, z_where, z_what], -1)
        depth_mu, depth_logvar = self.depth_head(h).chunk(2, -1)
        depth_logvar = depth_logvar.clamp(-10, 4)
        z_depth = reparameterize(depth_mu, depth_logvar) if sample else depth_mu
        h = torch.cat([h, z_depth], -1)
        raw = self.pres_head(h)
        if self.pres_clip == "straight_through":  # same values, a gradient back from beyond the bound
            logits = _ClipInward.apply(raw, -10.0, 10.0)
        else:
            logits = raw.clamp(-10.0, 10.0)  # authors clip at +-10 (spair/spair.py:467)
        if sample:
            u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            y = (logits + torch.log(u) - torch.log1p(-u)) / self.tau  # binary concrete, pre-sigmoid
            z_pres = torch.sigmoid(y)
        else:
            y = logits / self.tau
            z_pres = (logits > 0).to(logits.dtype)
        return {"where_mu": where_mu, "where_logvar": where_logvar, "z_where": z_where, "what_mu": what_mu,
                "what_logvar": what_logvar, "z_what": z_what, "depth_mu": depth_mu, "depth_logvar": depth_logvar,
                "z_depth": z_depth, "pres_logits": logits, "y": y, "z_pres": z_pres}

    def infer(self, x: Tensor, z_l: Tensor | None = None, sample: bool = True) -> dict[str, Tensor]:
        """All cells' latents and posterior parameters, each (B, N, .), in raster order."""
        feat = self._features(x, z_l)
        b = x.shape[0]
        if not self.sequential:
            return self._cells(x, feat, feat.new_zeros(b, self.N, 0), self.cell_xy, sample)
        G, per = self.G, N_WHERE + 2 + self.D
        done: list[Tensor] = []  # per decided cell: (B, per) = [z_where, z_depth, z_pres, z_what]
        outs: list[dict[str, Tensor]] = []
        zero = feat.new_zeros(b, per)
        for i in range(self.N):  # SPAIR's raster-order inference; batched over images
            r, c = divmod(i, G)
            ctx = [done[(r + dr) * G + c + dc] if 0 <= r + dr and 0 <= c + dc < G else zero for dr, dc in NEIGHBOURS]
            o = self._cells(x, feat[:, i : i + 1], torch.cat(ctx, -1).unsqueeze(1), self.cell_xy[i : i + 1], sample)
            outs.append(o)
            done.append(torch.cat([o["z_where"], o["z_depth"], o["z_pres"], o["z_what"]], -1)[:, 0])
        return {k: torch.cat([o[k] for o in outs], 1) for k in outs[0]}

    # ------------------------------------------------------------------ rendering
    def appearance(self, z_what: Tensor, z_l: Tensor | None = None) -> Tensor:
        """Glimpse decoder: z_what (B, N, D) [+ z_l (B, z_l_dim)] -> rgb and alpha (B, N, C+1, g, g) in [0, 1]."""
        b, n = z_what.shape[:2]
        dec_in = z_what
        if self.concat_z_what and z_l is not None:
            dec_in = torch.cat([z_what, z_l.unsqueeze(1).expand(-1, n, -1)], -1)  # paper 1 Fig. 2: [z_what, z_l]
        return torch.sigmoid(self.what_decoder(dec_in.reshape(b * n, -1)).float()).view(b, n, -1, self.g, self.g)

    def render(self, z_what: Tensor, z_where: Tensor, z_depth: Tensor, z_pres: Tensor, background: Tensor,
               z_l: Tensor | None = None, appearance: Tensor | None = None) -> dict[str, Tensor]:
        """Compose objects over the background.

        Args:
            z_what (B, N, D), z_where (B, N, 4), z_depth (B, N, 1), z_pres (B, N, 1);
            background (B, C, H, W) in [0, 1]; z_l (B, z_l_dim) for SPLIT-SPAIR;
            appearance: the glimpse decoder's output for these z_what / z_l when already computed
                (a second composite of the same objects reuses it).
        Returns:
            ``recon`` (B, C, H, W), ``objects`` (B, C, H, W) objects over black,
            ``alpha`` (B, 1, H, W) coverage of the objects, ``appearance`` (B, N, C+1, g, g).
        """
        b, n = z_what.shape[:2]
        app = (self.appearance(z_what, z_l) if appearance is None else appearance).flatten(0, 1)  # (B*N, C+1, g, g)
        rgb, alpha = app[:, : self.channels], app[:, self.channels :]
        if self.training and self.colour_noise > 0:  # authors' Renderer: GaussianNoise(0.01) on object colours
            rgb = (rgb + self.colour_noise * torch.randn_like(rgb)).clamp(0, 1)
        # premultiplied alpha: [alpha * rgb, alpha, alpha^2] resampled together, so the depth-weighted
        # sums below are one batched matrix product each over the cells, not (B, N, C, H, W) products
        pres = z_pres.float().view(b, n, 1)
        weight = pres * (torch.sigmoid(-z_depth.float().view(b, n, 1)) + 0.5)  # importance = z_pres alpha depth
        # coverage, as the authors: sum_i z_pres_i alpha_i importance_i / sum_i importance_i (spair/spair.py:573)
        last, last_scale = alpha * alpha, weight * pres
        layers = torch.cat([alpha * rgb, alpha, last], 1).view(b, n, self.channels + 2, self.g, self.g)
        # per cell: [importance * rgb, importance] / alpha and the coverage layer, summed over cells by the paste
        scale = torch.cat([weight.expand(-1, -1, self.channels + 1), last_scale], -1)
        H = W = self.image_size
        canvas = paste_sum(layers * scale.view(b, n, -1, 1, 1), self.boxes(z_where), H, W)  # (B, C + 2, H, W)
        num, norm, cover_sum = canvas.split([self.channels, 1, 1], 1)
        norm = norm + 1e-8  # sum_i importance_i
        objects = num / norm
        cover = cover_sum / norm
        recon = cover * objects + (1 - cover) * background
        return {"recon": recon, "objects": objects * cover, "alpha": cover, "appearance": app.view(b, n, *app.shape[1:])}

    def _background(self, x: Tensor, z_l: Tensor | None, sample: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mu, logvar = self.bg_encoder(x)
        z_bg = reparameterize(mu, logvar) if sample else mu
        inp = torch.cat([z_bg, z_l], -1) if (self.concat_z_bg and z_l is not None) else z_bg
        if isinstance(self.bg_decoder, ColourPathDecoder):  # its colour path fades in over the objects' warm-up
            logits = self.bg_decoder(inp, 1.0 - self.warmup_weight(self.object_warmup_steps))
        else:
            logits = self.bg_decoder(inp)
        return self.likelihood.mean(logits), z_bg, mu, logvar

    # ------------------------------------------------------------------ loss
    def step_count(self) -> int:
        """Training steps done (the trainer's global_step; a bare loop overrides this)."""
        return self.global_step

    def anneal(self) -> float:
        """Fraction of the prior annealing done at the current step (host int, no sync)."""
        return min(1.0, (self.step_count() + 1) / self.z_pres_anneal_steps)

    def warmup_weight(self, steps: int) -> float:
        """Weight of a warm-up term that fades linearly from 1 at step 0 to 0 at ``steps`` (0 in eval)."""
        return max(0.0, 1.0 - self.step_count() / steps) if (steps and self.training) else 0.0

    def recon_nll(self, mean: Tensor, x: Tensor) -> Tensor:
        """-log p(x | z) per image in nats (float32): Bernoulli (BCE) or fixed-sigma Gaussian, the
        family's likelihood (the SPLIT branch scores x_hat with the same one)."""
        return -self.likelihood.log_prob_mean(mean, x)

    def credit(self, x: Tensor, lat: Mapping[str, Tensor], bg: Tensor, appearance: Tensor, prior_log_odds: Tensor) -> Tensor:
        """Leave-one-out presence credit (``pres_credit``) for one present cell per image: it switches off a box
        whose removal the loss prefers (the second box on one object), and never holds one on.

        Args:
            x (B, C, H, W); lat: :meth:`infer`'s output; bg (B, C, H, W); appearance (B, N, C+1, g, g);
            prior_log_odds (B, N): the count prior's log-odds of each cell being on.
        Returns:
            (B,) ``|min(A, 0)| softplus(logit)`` at the picked cell: the cross-entropy towards off, weighted by
            how much the loss prefers off. ``A`` = reconstruction lost by switching the cell off (hard
            presences, nats) - ``beta * z_pres_beta * -prior_log_odds`` (the prior's price of keeping it on,
            in the same loss units); 0 for an image with no present cell. The push off is ``|A| p``, largest
            on the surest box (a score-function form, ``|A| (1 - p)``, leaves a confident box slowly).
        """
        b, n = lat["z_pres"].shape[:2]
        with torch.no_grad():
            on = (lat["z_pres"] > 0.5).float()  # (B, N, 1)
            one = F.one_hot(torch.multinomial(on[..., 0] + 1e-6, 1)[:, 0], n).unsqueeze(-1).float()  # (B, N, 1)
            picked_on = (on * one).sum((1, 2))
            two = lambda t: torch.cat([t, t])  # noqa: E731  both composites in one render
            r = self.render(two(lat["z_what"]), two(lat["z_where"]), two(lat["z_depth"]), torch.cat([on, on * (1 - one)]),
                            two(bg), appearance=two(appearance))["recon"]
            nll = self.recon_nll(r, two(x))
            price = -self.beta * self.z_pres_beta * (prior_log_odds * one[..., 0]).sum(1)
            off = (-(nll[b:] - nll[:b] - price) * picked_on).clamp(min=0.0)  # |min(A, 0)|: only ever off
        logit = (lat["pres_logits"][..., 0].float() * one[..., 0]).sum(1)
        return off * F.softplus(logit)

    def compute_loss(self, x: Tensor) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        z_l = None
        if self.local_branch is not None:
            z_l, local_terms = self.local_branch(x)  # paper 1 eq. 10-11 on the shuffled copy
            terms.update(local_terms)
        lat = self.infer(x, z_l, sample=True)
        bg, z_bg, bg_mu, bg_logvar = self._background(x, z_l, sample=True)
        out = self.render(lat["z_what"], lat["z_where"], lat["z_depth"], lat["z_pres"], bg, z_l)
        terms["recon"] = self.recon_nll(out["recon"], x)  # -log p(x | z)
        a = self.anneal() if self.training else 1.0
        mean, start, std = self.size_prior
        size_mu = mean + start * (1 - a)  # authors: prior size-logit mean annealed from 10 to 0
        kl_size = gaussian_kl(lat["where_mu"][..., :2], lat["where_logvar"][..., :2], size_mu, 2 * math.log(std))
        kl_shift = gaussian_kl(lat["where_mu"][..., 2:], lat["where_logvar"][..., 2:], 0.0, 0.0)
        terms["kl_where"] = (kl_size.sum(-1) + kl_shift.sum(-1)).sum(1)
        terms["kl_what"] = gaussian_kl_std_normal(lat["what_mu"], lat["what_logvar"]).sum(1)
        terms["kl_depth"] = gaussian_kl_std_normal(lat["depth_mu"], lat["depth_logvar"]).sum(1)
        prior_log_odds = count_prior_log_odds((lat["z_pres"] > 0.5)[..., 0].detach(), self.z_pres_prior_prob * a)
        y, logits = lat["y"][..., 0].float(), lat["pres_logits"][..., 0].float()
        terms["kl_pres"] = (concrete_log_density(y, logits, self.tau) - concrete_log_density(y, prior_log_odds, self.tau)).sum(1)
        terms["kl_bg"] = gaussian_kl_std_normal(bg_mu, bg_logvar)
        prior = terms["kl_where"] + terms["kl_depth"] + self.z_pres_beta * terms["kl_pres"]
        if self.training and self.pres_credit > 0 and self.step_count() >= self.pres_credit_start:
            terms["pres_credit"] = self.credit(x, lat, bg, out["appearance"], prior_log_odds)
        loss = terms["recon"] + self.beta * (self.z_what_beta * terms["kl_what"] + prior) + self.z_bg_beta * terms["kl_bg"]
        if "pres_credit" in terms:  # already in loss units (its advantage weighs the prior's price by beta)
            loss = loss + self.pres_credit * terms["pres_credit"]
        if z_l is not None:
            loss = loss + terms["aux_recon"] + self.z_l_beta * terms["kl_l"]
        warmup = self.warmup_weight(self.object_warmup_steps)
        if warmup > 0:  # every cell drawn: appearance learns without the pres head
            drawn = self.render(lat["z_what"], lat["z_where"], lat["z_depth"], torch.ones_like(lat["z_pres"]), bg, z_l,
                                appearance=out["appearance"])
            loss = loss + warmup * self.recon_nll(drawn["recon"], x)
        on = (lat["pres_logits"] > 0).float()  # (B, N, 1) cells on
        warmup = self.warmup_weight(self.background_warmup_steps)
        if self.training and self.background_warmup_hold > warmup:  # held while most cells are on (device-side test)
            most_on = on.mean() > 0.5
            warmup = torch.where(most_on, self.background_warmup_hold, warmup)
        if not isinstance(warmup, float) or warmup > 0:  # the background alone explains the image under full coverage
            loss = loss + warmup * self.recon_nll(bg, x)
        res = {k: v.mean() for k, v in terms.items()}
        res["count"] = on.sum((1, 2)).mean()  # objects on per image
        res["loss"] = loss.mean()
        return res

    # ------------------------------------------------------------------ surface
    def encode(self, x: Tensor, sample: bool = False) -> dict[str, Tensor]:
        """x -> {z_what (B, N, D), z_where (B, N, 4), z_depth (B, N, 1), z_pres (B, N, 1),
        z_pres_prob (B, N), z_bg (B, z_bg_dim), z_l, z_g}. ``z_g`` is every object latent of
        the image flattened (the global part); ``z_l`` the SPLIT latent. Posterior means and
        hard z_pres unless ``sample``."""
        z_l = self.local_branch.encode(x, sample=sample) if self.local_branch is not None else None
        lat = self.infer(x, z_l, sample=sample)
        _, z_bg, _, _ = self._background(x, z_l, sample=sample)
        out = {k: lat[k] for k in ("z_what", "z_where", "z_depth", "z_pres")}
        out["z_pres_prob"] = torch.sigmoid(lat["pres_logits"][..., 0])
        out["z_bg"] = z_bg
        out["z_g"] = torch.cat([out["z_where"], out["z_pres"], out["z_depth"], out["z_what"]], -1).flatten(1)
        if z_l is not None:
            out["z_l"] = z_l
        return out

    def decode_parts(self, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Reconstruction plus its parts: ``recon``, ``background``, ``objects``, ``alpha``."""
        z_l = latents.get("z_l")
        inp = torch.cat([latents["z_bg"], z_l], -1) if (self.concat_z_bg and z_l is not None) else latents["z_bg"]
        bg = self.likelihood.mean(self.bg_decoder(inp))
        out = self.render(latents["z_what"], latents["z_where"], latents["z_depth"], latents["z_pres"], bg, z_l)
        out["background"] = bg
        return out

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        return self.decode_parts(latents)["recon"]

    def sample_latents(self, n: int, temperature: float = 1.0) -> dict[str, Tensor]:
        """Prior draws: a count from the geometric count prior, that many random cells on."""
        dev, N = self.device, self.N
        q = max(1.0 - self.z_pres_prior_prob, 1e-6)
        count_p = torch.tensor([q**c for c in range(N + 1)], device=dev)
        count = torch.multinomial(count_p / count_p.sum(), n, replacement=True)
        rank = torch.rand(n, N, device=dev).argsort(1).argsort(1)
        z_pres = (rank < count.view(n, 1)).float().unsqueeze(-1)
        mean, _, std = self.size_prior
        size = mean + std * temperature * torch.randn(n, N, 2, device=dev)
        out = {"z_what": temperature * torch.randn(n, N, self.D, device=dev),
               "z_where": torch.cat([size, temperature * torch.randn(n, N, 2, device=dev)], -1),
               "z_depth": temperature * torch.randn(n, N, 1, device=dev), "z_pres": z_pres,
               "z_bg": temperature * torch.randn(n, self.z_bg_dim, device=dev)}
        if self.local_branch is not None:
            out["z_l"] = self.local_branch.sample_prior(n, temperature, dev)
        return out

    @torch.no_grad()
    def detect(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, C, H, W) -> boxes (B, N, 4) pixel ``(x1, y1, x2, y2)``, scores (B, N) =
        sigmoid(z_pres logits), counts (B,) = cells with score > 0.5 (posterior means).

        With ``detect_boxes: alpha`` each box is the extent of the object's decoded alpha map
        (glimpse pixels with alpha > 0.5) inside its ``z_where`` box, the box itself where the map is
        empty; with ``box``, the ``z_where`` box. The size latent hardly leaves its prior in a short
        run (the glimpse decoder adapts to the box instead), so the ``z_where`` box says where an
        object is but not how big it is."""
        z_l = self.local_branch.encode(x) if self.local_branch is not None else None
        lat = self.infer(x, z_l, sample=False)
        scores = torch.sigmoid(lat["pres_logits"][..., 0].float())
        boxes = box_to_xyxy(self.boxes(lat["z_where"]), self.image_size, self.image_size)
        if self.detect_boxes == "alpha":
            boxes = alpha_extent(self.appearance(lat["z_what"], z_l)[:, :, self.channels] > 0.5, boxes)
        return boxes, scores, (scores > 0.5).sum(1)
