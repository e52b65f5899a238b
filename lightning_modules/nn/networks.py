"""Convolutional encoders and decoders for 2^k-sized images.

The default shapes follow the SPLIT authors' SVHN networks (github 51616/split-vae,
``vae/model.py``, ``type='conv'``): three stride-2 convolutions (32, 64, 128 channels,
kernels 6, 6, 4) and a dense head; the decoder mirrors it with a dense layer to an
(H/8, W/8, 128) map and convolution + 2x upsampling stages. The decoder uses odd kernels
(5 instead of the authors' 4 and 6): PyTorch pads even 'same' convolutions with an extra
copy of the input on every call.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitlab.errors import ConfigError


def _check_size(image_size: int, n_down: int, what: str) -> None:
    if image_size % (2**n_down):
        raise ConfigError(
            f"{what}: image_size={image_size} must be divisible by 2**{n_down} "
            f"(one factor 2 per entry of `widths`); use fewer widths or another image size."
        )


class NearestUpConv2d(nn.Conv2d):
    """``Conv2d(k, padding='same')`` applied to the 2x nearest-upsampled input, computed without
    upsampling: each of the four output phases is a smaller convolution of the low-resolution
    map with the taps of the k x k kernel that land on the same input pixel summed (a 3x3
    kernel folds into four 2x2 kernels, 2.25x fewer multiply-adds; a 5x5 into four 3x3).
    Exactly the same function, parameters and gradients as ``Upsample(2) -> Conv2d`` (tested);
    the parameters keep ``Conv2d``'s names, so checkpoints are interchangeable.

    Shapes:
        forward(x: (B, C_in, H, W)) -> (B, C_out, 2H, 2W)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        if kernel_size % 2 == 0:
            raise ConfigError(f"NearestUpConv2d needs an odd kernel, got {kernel_size}.")
        super().__init__(in_channels, out_channels, kernel_size, padding="same")
        p = kernel_size // 2
        folds, starts = [], []
        for phase in (0, 1):  # output row 2i + phase reads low-res row i + floor((phase + d) / 2), d in [-p, p]
            lo = [(phase + d) // 2 for d in range(-p, p + 1)]
            fold = torch.zeros(max(lo) - min(lo) + 1, kernel_size)
            for t, o in enumerate(lo):
                fold[o - min(lo), t] = 1.0
            folds.append(fold)
            starts.append(min(lo))
        self.register_buffer("folds", torch.stack(folds), persistent=False)  # (2 phases, n taps, k)
        self.starts = starts

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        n = self.folds.shape[1]  # taps per phase (the same for both phases)
        f = self.folds.to(self.weight.dtype)  # (2, n, k)
        # the four phase kernels as one conv with 4 * C_out outputs: (py, px, C_out, C_in, n, n)
        k = torch.einsum("pay,qbx,oiyx->pqoiab", f, f, self.weight).reshape(-1, self.in_channels, n, n)
        pad = -min(self.starts)
        out = F.conv2d(x, k, None if self.bias is None else self.bias.repeat(4), padding=pad)
        out = out.view(b, 2, 2, self.out_channels, *out.shape[-2:])
        # phase (py, px) reads its window from output offset (start + pad): crop and interleave
        y = [out[:, py, :, :, self.starts[py] + pad : self.starts[py] + pad + h] for py in (0, 1)]
        rows = [torch.stack([r[:, px, :, :, self.starts[px] + pad : self.starts[px] + pad + w] for px in (0, 1)], -1)
                for r in y]  # each (B, C, H, W, 2)
        return torch.stack(rows, 3).reshape(b, self.out_channels, 2 * h, 2 * w)  # (B, C, H, 2, W, 2) -> (B, C, 2H, 2W)


class ConvEncoder(nn.Module):
    """q(z | x) as a diagonal Gaussian.

    Args:
        in_channels: C of the input image.
        image_size: H = W of the input.
        latent_dim: D, size of z.
        widths: channels of each stride-2 convolution.
        kernels: kernel size of each convolution (even or odd).
        norm: batch normalisation after each convolution.
        hidden: width of a dense ReLU layer between the convolutions and the head (0: none;
            the SPLIT authors' glimpse encoder has one of 2 * D, ``spair/spair.py`` ObjEncoder).
    Shapes:
        forward(x: (B, C, H, W)) -> (mu: (B, D), logvar: (B, D))
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        latent_dim: int = 128,
        widths: Sequence[int] = (32, 64, 128),
        kernels: Sequence[int] = (6, 6, 4),
        norm: bool = False,
        hidden: int = 0,
    ) -> None:
        super().__init__()
        if len(widths) != len(kernels):
            raise ConfigError(f"ConvEncoder: widths {list(widths)} and kernels {list(kernels)} differ in length.")
        _check_size(image_size, len(widths), "ConvEncoder")
        layers: list[nn.Module] = []
        c = in_channels
        for w, k in zip(widths, kernels):
            # padding (k-1)//2 with stride 2 halves the size exactly for even and odd k
            layers += [nn.Conv2d(c, w, k, stride=2, padding=(k - 1) // 2 if k % 2 else k // 2 - 1)]
            layers += [nn.BatchNorm2d(w), nn.ReLU()] if norm else [nn.ReLU()]
            c = w
        feat = c * (image_size // 2 ** len(widths)) ** 2
        if hidden:
            layers += [nn.Flatten(), nn.Linear(feat, hidden), nn.ReLU()]
            feat = hidden
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(feat, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.head(self.features(x))
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)


class ConvDecoder(nn.Module):
    """The network of p(x | z): z -> likelihood parameters.

    Args:
        latent_dim: D, size of the input code.
        out_channels: channels of the likelihood parameters (``k * C``).
        image_size: H = W of the output.
        widths: channels of each stage; each stage but the first upsamples 2x first.
        kernels: kernel size of each stage's convolution.
        out_kernel: kernel size of the last convolution.
        norm: batch normalisation after each convolution.
        hidden: width of a dense ReLU layer before the first map (0: none; the SPLIT authors'
            glimpse decoder has one of 2 * D, ``spair/spair.py`` ObjDecoder).
        upsample: ``nearest`` or ``bilinear`` (the authors' ``tf.image.resize``).
        fuse_upsample: compute each nearest upsampling + odd-kernel conv as one
            :class:`NearestUpConv2d` (the same function, ~2x faster on a CPU; other float rounding).
    Shapes:
        forward(z: (B, D)) -> params: (B, out_channels, H, W)
    """

    def __init__(
        self,
        latent_dim: int = 256,
        out_channels: int = 6,
        image_size: int = 32,
        widths: Sequence[int] = (128, 64, 32),
        kernels: Sequence[int] = (5, 5, 5),
        out_kernel: int = 5,
        norm: bool = False,
        hidden: int = 0,
        upsample: str = "nearest",
        fuse_upsample: bool = False,
    ) -> None:
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise ConfigError(f"ConvDecoder: upsample must be 'nearest' or 'bilinear', got {upsample!r}.")
        if len(widths) != len(kernels):
            raise ConfigError(f"ConvDecoder: widths {list(widths)} and kernels {list(kernels)} differ in length.")
        _check_size(image_size, len(widths), "ConvDecoder")
        self.base = image_size // 2 ** len(widths)
        self.first = widths[0]
        pre = [nn.Linear(latent_dim, hidden), nn.ReLU()] if hidden else []
        self.fc = nn.Sequential(*pre, nn.Linear(hidden or latent_dim, self.first * self.base**2), nn.ReLU())
        layers: list[nn.Module] = []
        c = widths[0]
        ks = list(kernels) + [out_kernel]
        fused = False  # whether the upsampling before the next conv is folded into it
        for i, (w, k) in enumerate(zip(widths, kernels)):
            layers += [self._conv(c, w, k, upsampled=fused)]
            layers += [nn.BatchNorm2d(w), nn.ReLU()] if norm else [nn.ReLU()]
            # a nearest 2x upsampling before an odd-kernel conv is folded into that conv (NearestUpConv2d);
            # Identity keeps the layer indices, so checkpoints load either way
            fused = fuse_upsample and upsample == "nearest" and ks[i + 1] % 2 == 1
            layers += [nn.Identity() if fused else nn.Upsample(scale_factor=2, mode=upsample)]
            c = w
        layers.append(self._conv(c, out_channels, out_kernel, upsampled=fused))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def _conv(c_in: int, c_out: int, k: int, upsampled: bool) -> nn.Conv2d:
        return NearestUpConv2d(c_in, c_out, k) if upsampled else nn.Conv2d(c_in, c_out, k, padding="same")

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.first, self.base, self.base)
        return self.net(h)


class MLPEncoder(nn.Module):
    """q(z | x) from the flattened image by a dense network (the SPLIT authors' ``-dense_bg`` /
    ``-dense_local`` encoder, ``spair/spair.py`` ImageEncoderDense: 1024, 500).

    Shapes:
        forward(x: (B, C, H, W)) -> (mu: (B, D), logvar: (B, D))
    """

    def __init__(self, in_channels: int, image_size: int, latent_dim: int, widths: Sequence[int] = (1024, 500)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_channels * image_size**2
        for w in widths:
            layers += [nn.Linear(d, w), nn.ReLU()]
            d = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(d, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.features(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)


class MLPDecoder(nn.Module):
    """z -> per-pixel parameters by a dense network (the SPLIT authors' ImageDecoderDense:
    500, 1024, then every pixel).

    Shapes:
        forward(z: (B, D)) -> params: (B, out_channels, H, W)
    """

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, widths: Sequence[int] = (500, 1024)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = latent_dim
        for w in widths:
            layers += [nn.Linear(d, w), nn.ReLU()]
            d = w
        layers.append(nn.Linear(d, out_channels * image_size**2))
        self.net = nn.Sequential(*layers)
        self.shape = (out_channels, image_size, image_size)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


def glorot_init_(module: nn.Module) -> None:
    """Keras' defaults, which the SPLIT authors' TensorFlow code runs with: glorot-uniform
    weights and zero biases for every linear and convolution layer."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SmallClassifierNet(nn.Module):
    """A compact CNN for the Table 1 judge: (B, C, H, W) in [0, 1] -> (B, num_classes) logits."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.net = nn.Sequential(
            block(in_channels, width), block(width, 2 * width), block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * width, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        # per-image standardisation makes the judge blind to global brightness shifts
        x = x.float()
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-3)
        return self.net(x)


__all__ = ["ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder", "SmallClassifierNet", "glorot_init_"]
