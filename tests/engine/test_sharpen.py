"""``--super-resolve``'s jobs: the bands sharpened onto the 10 m grid, strip by strip, each
10 m block averaging back to its native pixel, with a bbox window whose edges are not on
60 m pixel edges as for a whole tile."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from component.core.blocks import block_mean
from component.core.settings import Settings
from component.engine import sharpen
from component.engine.assemble import Product, job_names, write_product
from component.engine.decode import decode_bands
from component.io import l1c, load
from component.io.write import ProductWriter, dn_to_reflectance
from component.model.super_resolution import (
    BANDS_20M,
    BANDS_60M,
    FACTORS,
    GUIDE_BANDS,
    SHARPENED_BANDS,
    Bicubic,
)

Factory = Callable[..., dict[str, Any]]
SETTINGS = Settings()


def _window(item: dict[str, Any], west: float, south: float, east: float, north: float) -> Any:
    """A bbox of fractions of the item's extent."""
    w, s, e, n = item["bbox"]
    return (w + west * (e - w), s + south * (n - s), w + east * (e - w), s + north * (n - s))


class Recording(Bicubic):
    """The baseline, recording what each call was given."""

    name = "recording bicubic"

    def __init__(self) -> None:
        self.calls: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
        self.calls.append((factor, guide.shape, coarse.shape))
        assert guide.dtype == np.float32 and coarse.dtype == np.float32
        assert guide.shape[1:] == (coarse.shape[1] * factor, coarse.shape[2] * factor)
        return super().__call__(guide, coarse, factor)


def test_the_job_reads_the_native_drafts_and_writes_the_eight_bands(l1c_product: Factory) -> None:
    """It reads the 10 m guide's drafts, then the 20 m and 60 m bands' native drafts, and
    writes the eight sharpened bands: the 20 m ones (by 2), then B01, B09 (by 6)."""
    plan = load.plan(l1c.from_item(l1c_product(size_10m=96)), 10, None, 120, SETTINGS)
    assert sharpen.band_sets() == (GUIDE_BANDS, BANDS_20M, BANDS_60M)
    keys = [*(f"{b}_10m" for b in GUIDE_BANDS), *(f"{b}_20m" for b in BANDS_20M)]
    assert sharpen.needs(plan) == (*keys, "B01_60m", "B09_60m")
    assert sharpen.outputs() == (*BANDS_20M, *BANDS_60M)
    assert sorted(sharpen.outputs()) == sorted(SHARPENED_BANDS)
    assert all(FACTORS[band] == 2 for band in BANDS_20M)
    assert all(FACTORS[band] == 6 for band in BANDS_60M)
    assert sharpen.HALO % 6 == 0 and sharpen.ROWS % 6 == 0


@pytest.mark.parametrize(
    "fractions", [None, (0.13, 0.21, 0.71, 0.77), (0.0, 0.5, 0.37, 1.0)], ids=str
)
def test_strips_cover_the_grid_once_from_60m_edges(
    l1c_product: Factory, fractions: tuple[float, ...] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row of the 10 m grid is written by exactly one strip; strips and their windows
    start on 60 m pixel edges, and a window is the strip and its halo within the lattice."""
    monkeypatch.setattr(sharpen, "ROWS", 48)
    item = l1c_product(size_10m=384)
    product = l1c.from_item(item)
    bbox = None if fractions is None else _window(item, *fractions)
    plan = load.plan(product, 10, bbox, 120, SETTINGS)
    frame = sharpen.lattice(plan)
    assert frame.resolution == 10 and frame.width == plan.grids["B01"].width * 6
    top, left = (
        round((frame.transform.f - plan.grid_r.transform.f) / 10),
        round((plan.grid_r.transform.c - frame.transform.c) / 10),
    )
    assert 0 <= top < 6 and 0 <= left < 6
    assert top + plan.grid_r.height <= frame.height and left + plan.grid_r.width <= frame.width
    written: list[int] = []
    for start, stop, out_start, out_stop in sharpen.strips(plan):
        assert start % 6 == 0 and stop % 6 == 0
        assert start <= out_start < out_stop <= stop
        assert stop - start <= sharpen.ROWS + 2 * sharpen.HALO
        edge = out_start - out_start % 6  # the strip's first 60 m pixel edge
        assert start == max(0, edge - sharpen.HALO), "the halo, within the lattice"
        written += range(out_start, out_stop)
    assert written == list(range(top, top + plan.grid_r.height))


def _sharpened_product(
    item: dict[str, Any], bbox: Any, corrector: Any, folder: Path, resolver: Any
) -> tuple[Any, dict[str, Any], list[str]]:
    model, coarse_m = corrector
    product = l1c.from_item(item)
    plan = load.plan(product, 10, bbox, coarse_m, SETTINGS)
    decoded = decode_bands(product, plan, SETTINGS, folder)
    toa = np.stack([decoded.coarse_toa[b] for b in model.input_bands])
    state = model.estimate(toa, plan.coarse, None)
    writer = ProductWriter(folder / "out")
    ran: list[str] = []
    built = Product(plan, model, state, product.radiometry, decoded.scratch, None, resolver)
    try:
        write_product(built, writer, SETTINGS, on_job=ran.append)
        assets = writer.finish()
    finally:
        writer.close()
    return plan, {a.key: a for a in assets}, ran


def _reflectance(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dn_to_reflectance(dataset.read(1))


@pytest.mark.parametrize("window", [False, True], ids=["tile", "bbox"])
def test_sharpened_bands_average_back_to_the_native_bands(
    l1c_product: Factory,
    tmp_path: Path,
    corrector: Any,
    window: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight ``<band>_10m`` rasters on the 10 m grid, ``upsampled``, named by the method;
    each averages back, block by block, to the corrected native band; the resolver is given
    strips (not the grid) with the contract's guide; every job is counted by job_names."""
    monkeypatch.setattr(sharpen, "ROWS", 60)
    item = l1c_product(size_10m=240, seed=5, nodata_fraction=0.03)
    bbox = _window(item, 0.13, 0.21, 0.71, 0.77) if window else None
    resolver = Recording()
    plan, assets, ran = _sharpened_product(item, bbox, corrector, tmp_path, resolver)
    assert Counter(ran) == Counter(job_names(plan, with_scene=False, sharpened=True))
    fine = plan.grid_r
    for band in SHARPENED_BANDS:
        asset = assets[f"{band}_10m"]
        assert asset.grid == fine and asset.sampling == "upsampled"
        assert asset.method == resolver.name and asset.bands == (band,)
        with rasterio.open(asset.path) as dataset:
            assert dataset.dtypes[0] == "uint16" and dataset.nodata == 0
            assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert dataset.scales[0] == pytest.approx(0.0001)
            assert dataset.offsets[0] == pytest.approx(-0.1)
        sharp = _reflectance(asset.path)
        native_grid = plan.grids[band]
        native = _reflectance(assets[f"{band}_{round(native_grid.resolution)}m"].path)
        k, row0, col0 = fine.offset_in(native_grid)
        means = block_mean(sharp, k, row0, col0)
        native = native[: means.shape[0], : means.shape[1]]
        both = np.isfinite(means) & np.isfinite(native)
        assert both.mean() > 0.9, band
        error = np.abs(means[both] - native[both])
        assert error.mean() < 0.005, band
        # Blocks inside the window average back exactly (to the DN's quantization): only
        # those cut by the window's edge or by nodata may not.
        assert np.median(error) < 2e-4, band
        assert np.isnan(sharp).mean() < 0.2
    factors = Counter(call[0] for call in resolver.calls)
    assert set(factors) == {2, 6} and factors[2] == factors[6] > 1, "strips, not the grid"
    for factor, guide, coarse in resolver.calls:
        assert guide[0] == (4 if factor == 2 else 10)
        assert coarse[0] == (6 if factor == 2 else 2)
        assert guide[1] <= sharpen.ROWS + 2 * sharpen.HALO and guide[1] % 6 == 0
    assert not list((tmp_path / "out").glob(".*")), "no draft is left behind"


def test_sharpening_needs_a_10m_product(l1c_product: Factory) -> None:
    plan = load.plan(l1c.from_item(l1c_product(size_10m=96)), 20, None, 120, SETTINGS)
    with pytest.raises(ValueError, match="10 m"):
        sharpen.check_plan(plan)
