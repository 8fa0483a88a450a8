"""SAFE products as input: a ``.SAFE`` folder, its ``.zip`` (as ESA delivers it) and the
folder on (loopback) S3 are read in place and give the product their STAC item gives.

The products are :func:`support.synthetic.make_l1c_product`'s: the real SAFE layout
(``MTD_MSIL1C.xml``, ``GRANULE/<granule>/MTD_TL.xml`` with its angle grids, ``IMG_DATA`` JPEG
2000 bands, ``AUX_DATA/AUX_ECMWFT``) beside the CDSE-shaped item of the same data, which is the
reference: what :func:`component.io.safe_product.item_from_safe` reads from the SAFE must be
what the item states, and the CLI's products from both must be the same to one DN.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.settings import Settings
from component.errors import CredentialsError, InvalidItemError
from component.io import (
    catalog_input,
    geometry,
    l1c,
    load,
    safe_product,
    search,
    trust,
    zarr_product,
)
from support.nrt import component_env, models_dir, run_cli  # noqa: F401 (fixture)
from support.products import product_rasters
from support.s3 import S3Server
from support.safe import (
    ODATA_HREF,
    copy_without,
    product_folder,
    product_only_item,
    with_footprint,
    zip_safe,
)
from support.synthetic import make_l1c_product

LOCAL = Settings()
SIZE_10M = 384
"""Pixels of the CLI runs' 10 m bands (a multiple of 6: every grid aligned); about 2 s a run."""


@pytest.fixture(autouse=True)
def _stac_io() -> None:
    """pystac reads SAFE paths as the CLI makes it (its ``--item`` reader)."""
    zarr_product.install_stac_io(LOCAL)


def _write(root: Path, **kwargs: Any) -> tuple[Path, Path]:
    """A synthetic product under *root*: its SAFE folder and its CDSE item's file."""
    root.mkdir(parents=True, exist_ok=True)
    item = make_l1c_product(root, **kwargs)
    path = root / "item.json"
    path.write_text(json.dumps(item))
    return product_folder(root), path


def _with_hrefs(product: l1c.L1CProduct, old: str, new: str) -> l1c.L1CProduct:
    """*product* with *old* replaced by *new* at the start of every href (the form of the
    hrefs aside, two readings of one product must then be equal)."""

    def moved(href: str | None) -> str | None:
        return new + href[len(old) :] if href and href.startswith(old) else href

    bands = {b: dataclasses.replace(a, href=str(moved(a.href))) for b, a in product.bands.items()}
    return dataclasses.replace(
        product,
        href=None,
        bands=bands,
        granule_metadata=moved(product.granule_metadata),
        aux_ecmwf=moved(product.aux_ecmwf),
        aux_camsfo=moved(product.aux_camsfo),
        view={},
    )


@pytest.mark.parametrize("baseline", ["03.01", "05.10"])
def test_a_safe_folder_and_zip_read_as_their_item(tmp_path: Path, baseline: str) -> None:
    """Bands, grids, radiometry (no offset before 04.00, -1000 DN from it), baseline, granule
    metadata, ECMWF file and scene-mean angles: the SAFE folder and its zip state what the
    CDSE item of the same data states, and GDAL reads the same DN through ``/vsizip/``."""
    safe, item_file = _write(tmp_path / "p", size_10m=120, baseline=baseline)
    reference = l1c.from_item(search.read_item(str(item_file)).data)
    assert reference.radiometry.add_offset == (-1000.0 if baseline >= "04.00" else 0.0)
    archive = zip_safe(safe)

    folder_item = safe_product.item_from_safe(str(safe), LOCAL)
    assert folder_item["id"] == reference.id
    assert folder_item["properties"]["processing:version"] == baseline
    assert search.require_l1c(folder_item) is folder_item
    folder = l1c.from_item(folder_item, str(safe))
    zipped = l1c.from_item(safe_product.item_from_safe(str(archive), LOCAL), str(archive))
    assert folder.inputs == L1C_BANDS
    for product, root in ((folder, str(safe)), (zipped, f"/vsizip/{archive}/{safe.name}")):
        assert product.bands["B02"].href.startswith(root + "/GRANULE/")
        assert _with_hrefs(product, root, str(safe)) == _with_hrefs(reference, "", "")
        for key, value in reference.view.items():
            assert product.view[key] == pytest.approx(value, abs=1e-3), key
    assert zipped.granule_metadata == f"/vsizip/{archive}/{safe.name}/{reference_tail(reference)}"
    assert zipped.aux_ecmwf is not None and zipped.aux_ecmwf.endswith("/AUX_DATA/AUX_ECMWFT")
    for band in ("B02", "B8A", "B09"):
        grid = load.output_grid(reference, band, NATIVE_RESOLUTION[band])
        dn = load.read_band(reference, band, grid, LOCAL)
        np.testing.assert_array_equal(load.read_band(zipped, band, grid, LOCAL), dn)
    # the geometry reads the angle grids of MTD_TL.xml inside the zip, as beside the item
    coarse = load.output_grid(reference, "B02", 120)
    from_zip, notes = geometry.resolve(zipped, coarse, LOCAL)
    expected, _ = geometry.resolve(reference, coarse, LOCAL)
    assert notes == [] and from_zip is not None and expected is not None
    assert from_zip.source == "MTD_TL.xml angle grids"
    np.testing.assert_array_equal(from_zip.view_zenith, expected.view_zenith)


def reference_tail(product: l1c.L1CProduct) -> str:
    """The granule metadata's path inside the SAFE folder (``GRANULE/<granule>/MTD_TL.xml``)."""
    assert product.granule_metadata is not None
    return product.granule_metadata.split(".SAFE/", 1)[1]


def test_item_paths_name_the_safe_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--item``, the Python API and a catalog's item links accept the folder and the zip
    (also one whose contents lie at its root): the input's href (the output's
    ``derived_from``) is the product as named, made absolute."""
    safe, item_file = _write(tmp_path / "p", size_10m=60)
    archive = zip_safe(safe)
    flat = zip_safe(safe, tmp_path / "flat.zip", top=False)
    for source in (safe, archive, flat):
        found = search.read_item(str(source))
        assert found.href == str(source)
        assert found.id == json.loads(item_file.read_text())["id"]
    monkeypatch.chdir(tmp_path)
    assert search.read_item(f"p/{safe.name}/").href == str(safe)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    document = {
        "type": "Catalog",
        "stac_version": "1.1.0",
        "id": "downloads",
        "description": "products downloaded from the Copernicus Browser",
        "links": [{"rel": "item", "href": f"../p/{archive.name}"}],
    }
    (catalog / "catalog.json").write_text(json.dumps(document))
    (linked,) = catalog_input.catalog_items(catalog)
    assert search.read_item(linked).href == str(archive)

    from component.api import load_l1c

    toa = load_l1c(str(archive), bands=["B02", "B8A"], resolution=60).values
    expected = load_l1c(str(item_file), bands=["B02", "B8A"], resolution=60).values
    np.testing.assert_array_equal(toa, expected)


def test_an_item_whose_product_is_a_zip_reads_as_the_zip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog of downloaded products: each item has no band assets, only CDSE's
    ``Product`` asset naming the zip (relative to the item, or absolute) or the ``.SAFE``
    folder. It reads as that product given to ``--item`` (bands, grids, radiometry, footprint,
    angles from the SAFE's metadata), under the item's own id where that is a valid product
    id (else the SAFE's); its ``Product`` asset stays, made absolute. An item with band
    assets is read by its bands, whatever its ``Product``."""
    safe, item_file = _write(tmp_path / "p", size_10m=60, baseline="03.01")
    archive = zip_safe(safe)
    direct = search.read_item(str(archive))
    expected = l1c.from_item(direct.data, direct.href)
    item_path = product_only_item(tmp_path / "cat" / "item.json", direct.id, f"../p/{archive.name}")
    (linked,) = catalog_input.catalog_items(item_path.parent)
    reads = []
    real = safe_product.item_from_product

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(safe_product, "item_from_product", counted)
    (found,) = search.read_items(linked, LOCAL)
    assert len(reads) == 1  # the zip's metadata read once, not again for the item
    assert found.href == str(item_path)  # derived_from: the item document the run was given
    assert found.id == direct.id
    assert found.data["assets"]["Product"]["href"] == str(archive)
    assert found.data["geometry"] == direct.data["geometry"]
    assert found.data["properties"] == direct.data["properties"]
    product = l1c.from_item(found.data, found.href)
    assert dataclasses.replace(product, href=direct.href) == expected
    assert product.radiometry.add_offset == 0.0 and product.view == expected.view

    # an absolute href, and an id of the item's own: kept
    read = search.read_item(str(product_only_item(tmp_path / "a" / "i.json", "mine", str(archive))))
    assert read.id == "mine" and l1c.from_item(read.data).bands == expected.bands
    # the .SAFE folder, and an id that cannot name a product: the SAFE's id
    read = search.read_item(str(product_only_item(tmp_path / "b" / "i.json", "a/../b", str(safe))))
    assert read.id == direct.id
    assert read.data["assets"]["B02"]["href"].startswith(f"{safe}/GRANULE/")

    with_bands = json.loads(item_file.read_text())
    with_bands["assets"]["Product"] = {"href": ODATA_HREF, "type": "application/zip"}
    assert zarr_product.expand(with_bands, LOCAL, str(item_file)) is with_bands
    # a remote document may not name the user's local zip (the trust rules, before anything)
    remote = json.loads(item_path.read_text())
    remote["assets"]["Product"]["href"] = str(archive)
    with pytest.raises(InvalidItemError, match="may not name local files"):
        trust.check_item(remote, "https://stac.example.org/items/x")


def test_a_product_download_link_is_refused_in_one_line(tmp_path: Path) -> None:
    """CDSE's OData ``$value`` URL (a redirect to a download that needs a bearer token) is no
    zip GDAL reads in place: refused (exit 4) in one line saying to download the zip and pass
    it to ``--item``, before anything is read. A local href that is neither: said so."""
    item = json.loads(product_only_item(tmp_path / "i.json", "x", ODATA_HREF).read_text())
    trust.check_item(item, "https://stac.dataspace.copernicus.eu/v1/x")  # an allowed href
    with pytest.raises(InvalidItemError) as refused:
        zarr_product.expand(item, LOCAL, "https://stac.dataspace.copernicus.eu/v1/x")
    message = str(refused.value)
    assert "\n" not in message and "download the zip and pass it to --item" in message
    assert refused.value.exit_code == 4
    (tmp_path / "download.bin").write_bytes(b"PK")
    item["assets"]["Product"]["href"] = "download.bin"
    with pytest.raises(InvalidItemError, match=r"is not a \.zip or \.SAFE: name the product"):
        zarr_product.expand(item, LOCAL, str(tmp_path / "i.json"))


def test_what_is_a_safe_source(tmp_path: Path) -> None:
    """A ``.SAFE`` (with or without ``/``, local, ``/eodata`` or ``s3://``), any ``.zip``, and
    a folder holding ``MTD_MSIL1C.xml``; not an item document, a Zarr or a plain folder."""
    renamed = tmp_path / "downloaded"
    renamed.mkdir()
    (renamed / "MTD_MSIL1C.xml").write_text("<x/>")
    yes = [
        "/eodata/Sentinel-2/MSI/L1C/2024/01/16/S2B_MSIL1C_X.SAFE",
        "s3://eodata/Sentinel-2/MSI/L1C/2024/01/16/S2B_MSIL1C_X.SAFE/",
        "S2B_MSIL1C_X.SAFE.zip",
        "https://example.org/download/S2B_MSIL1C_X.zip",
        str(renamed),
    ]
    no = ["item.json", "S2B_MSIL1C_X.zarr", "s3://eodata/x.zarr/", str(tmp_path), "/vsizip/a"]
    assert [safe_product.is_safe_source(s) for s in yes] == [True] * len(yes)
    assert [safe_product.is_safe_source(s) for s in no] == [False] * len(no)
    assert safe_product.media_type("/d/X.SAFE") == "application/x-safe"
    assert safe_product.media_type("/d/X.SAFE.zip") == "application/zip"


def test_radio_add_offset_must_agree_with_the_baseline(tmp_path: Path) -> None:
    """The radiometry follows the baseline (as for every input); a product whose
    ``RADIO_ADD_OFFSET`` says otherwise would be calibrated wrongly: refused (exit 4)."""
    safe, _ = _write(tmp_path / "p", size_10m=60, baseline="05.10")
    mtd = safe / "MTD_MSIL1C.xml"
    original = mtd.read_text()
    mtd.write_text(original.replace(">-1000</RADIO_ADD_OFFSET>", ">-500</RADIO_ADD_OFFSET>"))
    with pytest.raises(InvalidItemError, match=r"RADIO_ADD_OFFSET -500 .* -1000 DN"):
        safe_product.item_from_safe(str(safe), LOCAL)
    mtd.write_text(original.replace("<PROCESSING_BASELINE>05.10<", "<PROCESSING_BASELINE>03.01<"))
    with pytest.raises(InvalidItemError, match=r"RADIO_ADD_OFFSET -1000 .* implies 0 DN"):
        safe_product.item_from_safe(str(safe), LOCAL)


def test_footprint_and_malformed_metadata(tmp_path: Path) -> None:
    """The product's ``Global_Footprint`` is the item's geometry when stated (else the tile's
    extent); a second granule, no EPSG code or a file that is not XML are refused in one line."""
    safe, item_file = _write(tmp_path / "p", size_10m=60)
    extent = json.loads(item_file.read_text())["geometry"]
    assert safe_product.item_from_safe(str(safe), LOCAL)["geometry"] == extent
    ring = [(0.5, 44.19), (0.55, 44.19), (0.55, 44.23), (0.5, 44.23), (0.5, 44.19)]
    with_footprint(safe, ring)
    item = safe_product.item_from_safe(str(safe), LOCAL)
    assert item["geometry"] == {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}
    assert item["bbox"] == [0.5, 44.19, 0.55, 44.23]

    mtd = safe / "MTD_MSIL1C.xml"
    text = mtd.read_text()
    first = text.index("<IMAGE_FILE>GRANULE/")
    mtd.write_text(text[:first] + "<IMAGE_FILE>GRANULE/L1C_other/IMG_DATA/T_B01</IMAGE_FILE>"
                   + text[first:])  # fmt: skip
    with pytest.raises(InvalidItemError, match="lists 2 granules"):
        safe_product.item_from_safe(str(safe), LOCAL)
    mtd.write_text(text)
    (tile,) = safe.glob("GRANULE/*/MTD_TL.xml")
    tile_text = tile.read_text()
    tile.write_text(tile_text.replace("EPSG:32631", "WGS84 / UTM zone 31N"))
    with pytest.raises(InvalidItemError, match="no EPSG code"):
        safe_product.item_from_safe(str(safe), LOCAL)
    tile.write_text(tile_text[:500])
    with pytest.raises(InvalidItemError, match="is not XML"):
        safe_product.item_from_safe(str(safe), LOCAL)


def test_a_zip_on_s3_is_read_in_place(tmp_path: Path, s3_server: S3Server) -> None:
    """A ``.zip`` on S3 is read through ``/vsizip//vsis3/`` like a local one (the same
    pixels); ``s3://`` without keys: the credentials error."""
    safe, _ = _write(tmp_path / "p", size_10m=60)
    archive = zip_safe(safe)
    href = s3_server.upload_file(archive, f"zips/{archive.name}")
    settings = Settings.from_environ(s3_server.gdal_env())
    with pytest.raises(CredentialsError, match="AWS_SECRET_ACCESS_KEY"):
        safe_product.item_from_safe(href, Settings())
    item = safe_product.item_from_safe(href, settings)
    remote = l1c.from_item(item, href)
    local = l1c.from_item(safe_product.item_from_safe(str(safe), LOCAL))
    assert remote.bands["B02"].href.startswith(f"/vsizip//vsis3/eodata/zips/{archive.name}/")
    assert remote.granule_metadata and remote.granule_metadata.startswith("/vsizip//vsis3/")
    grid = load.output_grid(local, "B8A", 20)
    np.testing.assert_array_equal(
        load.read_band(remote, "B8A", grid, settings), load.read_band(local, "B8A", grid, LOCAL)
    )


# The CLI: the products of a SAFE folder, its zip and the folder on S3 against the item's.


@pytest.fixture(scope="module")
def cli_product(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A product for the CLI runs: its SAFE folder and its item's file."""
    return _write(tmp_path_factory.mktemp("cli") / "p", size_10m=SIZE_10M, baseline="05.10")


@pytest.fixture(scope="module")
def item_output(
    cli_product: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,  # noqa: F811
) -> Path:
    """The CLI's product of the STAC item: the reference."""
    output = tmp_path_factory.mktemp("item") / "out"
    args = ["--resolution", "60", "--item", str(cli_product[1]), "--output", str(output)]
    done = run_cli(args, component_env(models_dir))
    assert done.returncode == 0, done.stderr
    return output


def _published_item(output: Path) -> dict[str, Any]:
    (path,) = output.glob("*/*_s2-l1c2l2a-*.json")
    return dict(json.loads(path.read_text()))


def _assert_same_product(output: Path, reference: Path, source: str, media_type: str) -> None:
    """Every COG the same to one DN; the lineage says the angle grids and the ECMWF file were
    read; ``derived_from`` names the SAFE product."""
    ours, theirs = product_rasters(output), product_rasters(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) >= 15
    for name, values in ours.items():
        assert values.shape == theirs[name].shape, name
        assert np.abs(values - theirs[name]).max() <= 1, name
    item = _published_item(output)
    lineage = item["properties"]["processing:lineage"]
    assert "MTD_TL.xml angle grids" in lineage and "AUX_ECMWFT" in lineage, lineage
    links = [link for link in item["links"] if link["rel"] == "derived_from"]
    assert [(link["href"], link["type"]) for link in links] == [(source, media_type)]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["folder", "zip"])
def test_the_cli_corrects_a_local_safe_as_its_item(
    cli_product: tuple[Path, Path],
    item_output: Path,
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
    form: str,
) -> None:
    """``run --item X.SAFE`` and ``run --item X.SAFE.zip``: the item's product, to one DN."""
    safe = cli_product[0]
    source = str(safe) if form == "folder" else str(zip_safe(safe, tmp_path / f"{safe.name}.zip"))
    output = tmp_path / "out"
    args = ["--resolution", "60", "--item", source, "--output", str(output)]
    done = run_cli(args, component_env(models_dir))
    assert done.returncode == 0, done.stderr
    _assert_same_product(output, item_output, source, safe_product.media_type(source))


@pytest.mark.slow
def test_the_cli_corrects_a_safe_on_s3_as_its_item(
    cli_product: tuple[Path, Path],
    item_output: Path,
    tmp_path: Path,
    s3_server: S3Server,
    models_dir: Path,  # noqa: F811
) -> None:
    """``run --item s3://eodata/.../X.SAFE`` (as on CDSE) and its ``.zip`` on S3: bands
    through ``/vsis3/`` (``/vsizip//vsis3/``), the metadata signed as GDAL signs; the item's
    product to one DN. Without keys: exit 7."""
    safe = cli_product[0]
    prefix = f"Sentinel-2/MSI/L1C/2024/01/16/{safe.name}/"
    s3_server.upload_tree(safe, prefix)
    href = f"s3://{s3_server.bucket}/{prefix}".rstrip("/")
    output = tmp_path / "out"
    args = ["--resolution", "60", "--item", href, "--output", str(output)]
    done = run_cli(args, component_env(models_dir, **s3_server.gdal_env()))
    assert done.returncode == 0, done.stderr
    _assert_same_product(output, item_output, href, safe_product.SAFE_MEDIA_TYPE)

    # the .zip CDSE's OData delivers, on S3 and read there in place
    archive = zip_safe(safe, tmp_path / f"{safe.name}.zip")
    zipped = s3_server.upload_file(archive, f"zips/{archive.name}")
    output = tmp_path / "zip"
    args = ["--resolution", "60", "--item", zipped, "--output", str(output)]
    done = run_cli(args, component_env(models_dir, **s3_server.gdal_env()))
    assert done.returncode == 0, done.stderr
    _assert_same_product(output, item_output, zipped, safe_product.ZIP_MEDIA_TYPE)

    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    env = {k: v for k, v in component_env(models_dir).items() if k not in keys}
    env |= {k: v for k, v in s3_server.gdal_env().items() if k not in keys}
    done = run_cli(["--item", href, "--output", str(tmp_path / "nokeys")], env)
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.slow
def test_the_cli_corrects_a_catalog_of_downloaded_zips_as_the_zip(
    cli_product: tuple[Path, Path],
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """``run --catalog DIR`` whose item has only a ``Product`` asset naming the downloaded zip
    publishes what ``run --item X.SAFE.zip`` publishes: every COG the same, the same item
    (id, properties, assets' checksums), but ``derived_from`` names the item document the run
    was given (which names the zip)."""
    safe = cli_product[0]
    archive = zip_safe(safe, tmp_path / f"{safe.name}.zip")
    env = component_env(models_dir)
    direct = tmp_path / "direct"
    done = run_cli(["--resolution", "60", "--item", str(archive), "--output", str(direct)], env)
    assert done.returncode == 0, done.stderr
    item_id = safe.name.removesuffix(".SAFE")
    item_path = product_only_item(
        tmp_path / "downloads" / f"{item_id}.json", item_id, f"../{archive.name}"
    )
    output = tmp_path / "out"
    args = ["--resolution", "60", "--catalog", str(item_path.parent), "--output", str(output)]
    done = run_cli(args, env)
    assert done.returncode == 0, done.stderr
    _assert_same_product(output, direct, str(item_path), "application/geo+json")
    ours, theirs = _published_item(output), _published_item(direct)
    assert ours["id"] == theirs["id"]
    timeless = {"processing:datetime", "created", "updated"}
    assert {k: v for k, v in ours["properties"].items() if k not in timeless} == {
        k: v for k, v in theirs["properties"].items() if k not in timeless
    }
    assert {k: a.get("file:checksum") for k, a in ours["assets"].items()} == {
        k: a.get("file:checksum") for k, a in theirs["assets"].items()
    }


# Faults: one CLI subprocess each, run concurrently (mostly start-up time).

FAULTS = {
    # name: (exit code, words the error line holds, whether --output stays unwritten)
    "missing_path": (4, "does not exist", True),
    "truncated_zip": (4, "not a readable zip archive", True),
    "zip_without_safe": (4, "holds no SAFE product", True),
    "safe_without_mtd": (4, "has no MTD_MSIL1C.xml", True),
    "safe_without_b03": (5, "B03", False),
    "zip_without_b03": (5, "B03", False),
    "odata_product": (4, "download the zip and pass it to --item", True),
}


def _faulty_inputs(safe: Path, folder: Path) -> dict[str, Path]:
    """Each fault's input, made from the good product *safe*."""
    archive = zip_safe(safe, folder / "good.zip")
    (folder / "truncated.zip").write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with zipfile.ZipFile(folder / "photos.zip", "w") as bundle:
        bundle.writestr("holiday/beach.jpg", b"\xff\xd8 not a SAFE product")
    nomtd = copy_without(safe, folder / "nomtd", "MTD_MSIL1C.xml")
    nob03 = copy_without(safe, folder / "nob03", "GRANULE/*/IMG_DATA/*_B03.jp2")
    inputs = {
        "missing_path": folder / "missing.SAFE",
        "truncated_zip": folder / "truncated.zip",
        "zip_without_safe": folder / "photos.zip",
        "safe_without_mtd": nomtd,
        "safe_without_b03": nob03,
        "zip_without_b03": zip_safe(nob03, folder / "nob03.zip"),
        # an item whose only data is CDSE's Product asset: an OData download URL
        "odata_product": product_only_item(
            folder / "odata" / "item.json", safe.name.removesuffix(".SAFE"), ODATA_HREF
        ),
    }
    assert set(inputs) == set(FAULTS)
    return inputs


@pytest.fixture(scope="module")
def fault_runs(
    cli_product: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,  # noqa: F811
) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    """Each fault's finished CLI run and its ``--output``."""
    folder = tmp_path_factory.mktemp("faults")
    inputs = _faulty_inputs(cli_product[0], folder)
    env = component_env(models_dir)

    def run(name: str) -> tuple[subprocess.CompletedProcess[str], Path]:
        output = folder / f"out-{name}"
        args = ["--resolution", "60", "--item", str(inputs[name]), "--output", str(output)]
        return run_cli(args, env), output

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(FAULTS, pool.map(run, FAULTS), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAULTS))
def test_a_broken_safe_is_one_error_line(
    fault_runs: dict[str, tuple[subprocess.CompletedProcess[str], Path]], name: str
) -> None:
    """A missing path, a truncated zip, a zip without a SAFE product, a SAFE without
    ``MTD_MSIL1C.xml``, an item whose ``Product`` is an OData download URL (exit 4, before any
    work: nothing written) and a SAFE or zip lacking a
    band file (exit 5 when its bands are opened, the band named, no product): one ``error:``
    line, last, that says what is wrong; no traceback."""
    done, output = fault_runs[name]
    code, words, nothing_written = FAULTS[name]
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and done.stderr.rstrip("\n").splitlines()[-1] == errors[0], done.stderr
    assert done.returncode == code, done.stderr
    assert words in errors[0], errors[0]
    if nothing_written:
        assert not output.exists()
    else:
        summary = json.loads((output / "run-summary.json").read_text())
        assert summary["processed"] == [] and len(summary["failed"]) == 1
        assert not [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_the_module_is_light_to_import() -> None:
    """``safe_product`` imports neither ``zarr_product`` (which imports it) nor rasterio at
    import time: the CLI validates its inputs before any heavy import."""
    code = (
        "import sys; import component.io.safe_product; "
        "print('component.io.zarr_product' in sys.modules, 'rasterio' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "False"]
