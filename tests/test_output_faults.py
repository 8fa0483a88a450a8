"""Faults of the output's environment: a full disk, a read-only mount, a file as ``--output``.

Each is exit code 9 (``OutputError``) with one ``error:`` line on stderr naming the fault and
the fix, no traceback, no "internal error", nothing half-written in ``--output`` (staging
discarded, ``catalog.json`` valid and linking what was published before), and the next run,
once the fault is gone, completes.

The file systems are real: small tmpfs mounts (``mount -t tmpfs -o size=...``, which needs
root or CAP_SYS_ADMIN; those tests skip, saying why, where mounting is not allowed), filled
with a filler file to the free space a case wants, and remounted read-only. A per-process
file-size limit (``RLIMIT_FSIZE``, so ``EFBIG``) needs no privilege and always runs. The CLI
runs in a subprocess on tiny synthetic products: 192 or 96 px at 10 m, processed at 60 m.
Libtiff's own C-level messages (``_tiffWriteProc: No space left on device.``) may precede the
error line: the component's log lines may not say the fault a second time.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from component.errors import OutputError
from component.io.output_faults import check_output, environment_fault
from support.nrt import (
    catalog_problems,
    component_env,
    items_in_process,  # noqa: F401 (fixture)
    linked_ids,
    models_dir,  # noqa: F401 (fixture)
    nrt_models,  # noqa: F401 (fixture)
)
from support.synthetic import make_l1c_product

MOUNT_SIZE = "64m"
"""Room for a few of these products: about 120 KiB each, but up to 10 MiB while staged (a
draft is written in whole 512 x 512 tiles, uncompressed, and 18 may be open at once)."""
COMPONENT_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (INFO|WARNING|ERROR) component")


# --------------------------------------------------------------------------------- helpers


def _mount(folder: Path, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: a small real file system cannot be made here")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=" + MOUNT_SIZE, *options)), "tmpfs",
         str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")


def _remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MiB tmpfs, unmounted afterwards."""
    folder = tmp_path / "fs"
    _mount(folder)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """A filler file leaving about *leave* bytes free on *folder*'s file system."""
    filler = folder / "filler"
    stat = os.statvfs(folder)
    remaining = stat.f_bavail * stat.f_frsize - leave
    chunk = b"\0" * (1 << 16)
    with filler.open("wb") as stream:
        try:
            while remaining > 0:
                remaining -= stream.write(chunk[: min(len(chunk), remaining)])
                stream.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two small synthetic L1C items (distinct ids), as item files."""
    root = tmp_path_factory.mktemp("l1c")
    paths = {}
    for name, size, orbit in (("a", 96, 51), ("b", 192, 8), ("c", 96, 22)):
        item = make_l1c_product(root / name, size_10m=size, relative_orbit=orbit, seed=orbit)
        path = root / f"{name}.json"
        path.write_text(json.dumps(item))
        paths[name] = str(path)
    return paths


def _cli(
    output: Path,
    item: str,
    models: Path,
    *,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "component", "run", "--device", "cpu", "-q"]
    command += ["--resolution", "60", "--item", item, "--output", str(output)]
    return subprocess.run(
        command,
        env={**component_env(models), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=preexec,
    )


def _one_error_line(stderr: str) -> str:
    """The run's error line, after checking it is the only thing the component said."""
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    said = [line for line in stderr.splitlines() if COMPONENT_LOG_LINE.match(line)]
    assert said == [], stderr
    return errors[0]


def _nothing_half_written(output: Path) -> None:
    """No staged product, no temporary file, no draft: only the published products."""
    staging = output / ".staging"
    assert not staging.exists() or not any(staging.iterdir()), list(staging.iterdir())
    leftovers = [p.name for p in output.rglob("*") if p.name.endswith((".tmp", ".draft.tif"))]
    assert leftovers == []


def _published_once(output: Path, item: str, models: Path) -> str:
    done = _cli(output, item, models)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["processed"][0])


# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("leave_kib", [0, 100], ids=["in-the-dn-scratch", "in-a-cog-draft"])
def test_a_full_disk_is_exit_9_in_one_line_and_the_next_run_completes(
    small_fs: Path,
    items: dict[str, str],
    models_dir: Path,  # noqa: F811
    leave_kib: int,
) -> None:
    """ENOSPC where it strikes first: with nothing left, in the decoded DN spilled to staging
    (a Python OSError); with 100 KiB left, in a COG draft (GDAL's "Write failed", no errno:
    told by the free space). Exit 9, "no space left", the earlier product still published;
    freed, the run completes."""
    output = small_fs / "out"
    first = _published_once(output, items["a"], models_dir)
    filler = _fill(small_fs, leave_kib * 1024)

    failed = _cli(output, items["b"], models_dir)
    assert failed.returncode == 9, failed.stderr
    line = _one_error_line(failed.stderr)
    assert line.startswith(f"error: no space left on the device holding {output}"), line
    assert line.endswith("free space or choose another --output"), line
    _nothing_half_written(output)
    assert catalog_problems(output) == [] and linked_ids(output) == [first]
    summary = json.loads(failed.stdout)  # the summary is printed even when it is not written
    assert [entry["exit_code"] for entry in summary["items"]] == [9]
    assert summary["failed"][0]["reason"] == line.removeprefix("error: ")

    filler.unlink()  # space freed
    again = _cli(output, items["b"], models_dir)
    assert again.returncode == 0, again.stderr
    assert catalog_problems(output) == []
    assert len(linked_ids(output)) == 2 and first in linked_ids(output)
    _nothing_half_written(output)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize("limit_kib", [32, 200], ids=["scratch", "cog-draft"])
def test_a_file_size_limit_is_exit_9_in_one_line_and_the_next_run_completes(
    tmp_path: Path,
    items: dict[str, str],
    models_dir: Path,  # noqa: F811
    limit_kib: int,
) -> None:
    """EFBIG (a per-process file-size limit: no mount needed) where the DN scratch (32 KiB)
    or a COG draft (200 KiB: the DN fit, a 512 x 512 draft tile does not) is written."""
    output = tmp_path / "out"
    first = _published_once(output, items["a"], models_dir)
    failed = _cli(output, items["b"], models_dir, preexec=_limit_file_size(limit_kib * 1024))
    assert failed.returncode == 9, failed.stderr
    line = _one_error_line(failed.stderr)
    assert str(output) in line and line.endswith("another --output"), line
    _nothing_half_written(output)
    assert catalog_problems(output) == [] and linked_ids(output) == [first]

    again = _cli(output, items["b"], models_dir)
    assert again.returncode == 0, again.stderr
    assert catalog_problems(output) == [] and len(linked_ids(output)) == 2


def test_a_read_only_output_is_refused_before_any_work(
    small_fs: Path,
    items: dict[str, str],
    models_dir: Path,  # noqa: F811
) -> None:
    """Read-only at the start (a mount left read-only): refused at once, nothing touched;
    a new --output under it too; remounted read-write, the run completes."""
    output = small_fs / "out"
    first = _published_once(output, items["a"], models_dir)
    catalog_before = (output / "catalog.json").read_bytes()
    _remount(small_fs, "ro")
    try:
        for target in (output, small_fs / "new" / "out"):
            refused = _cli(target, items["b"], models_dir)
            assert refused.returncode == 9, refused.stderr
            line = _one_error_line(refused.stderr)
            assert line.startswith(f"error: {target} is on a read-only file system"), line
            assert "remount it read-write or choose another --output" in line
            assert refused.stdout == ""  # refused before any item was looked at
    finally:
        _remount(small_fs, "rw")
    assert (output / "catalog.json").read_bytes() == catalog_before
    assert not (small_fs / "new").exists()
    again = _cli(output, items["b"], models_dir)
    assert again.returncode == 0, again.stderr
    assert catalog_problems(output) == [] and first in linked_ids(output)


@pytest.mark.parametrize("stage", ["write", "publish"])
def test_a_disk_that_fills_up_late_in_a_run_is_exit_9_and_the_next_run_completes(
    small_fs: Path,
    items: dict[str, str],
    models_dir: Path,  # noqa: F811
    tmp_path: Path,
    stage: str,
) -> None:
    """The disk fills up (another writer) once the COGs are staged (``write``: the staged Item
    cannot be written) or once the product is moved into place (``publish``: catalog.json
    cannot be rewritten). Exit 9 either way; no temporary JSON left; catalog.json stays the
    valid earlier one; freed, the next run links or makes the product.

    (A file system cannot be remounted read-only mid-run to test that case: the run's open
    ``.lock`` makes the kernel refuse, EBUSY.)"""
    output = small_fs / "out"
    first = _published_once(output, items["a"], models_dir)
    marker = tmp_path / "paused"
    pause = {"COMPONENT_TEST_PAUSE_AT": stage, "COMPONENT_TEST_PAUSE_MARKER": str(marker)}
    command = [sys.executable, "-m", "component", "run", "--device", "cpu", "-q"]
    command += ["--resolution", "60", "--item", items["b"], "--output", str(output)]
    env = {**component_env(models_dir), **pause}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"the run never reached the {stage} stage"
            time.sleep(0.05)
        filler = _fill(small_fs, 0)
        marker.unlink()  # go on
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 9, stderr
    line = _one_error_line(stderr)
    assert line.startswith(f"error: no space left on the device holding {output}"), line
    _nothing_half_written(output)
    assert catalog_problems(output) == [] and linked_ids(output) == [first]
    result = json.loads(stdout)["items"][0]
    # publish: the product is whole in place, only catalog.json could not say so yet.
    expected = ("processed", 0) if stage == "publish" else ("failed", 9)
    assert (result["status"], result["exit_code"]) == expected

    filler.unlink()
    again = _cli(output, items["b"], models_dir)
    assert again.returncode == 0, again.stderr
    status = json.loads(again.stdout)["items"][0]["status"]
    # Published before the catalog could say so: linked, verified and skipped now.
    assert status == ("skipped" if stage == "publish" else "processed")
    _nothing_half_written(output)
    assert catalog_problems(output) == [] and len(linked_ids(output)) == 2


def test_an_output_that_is_a_file_is_refused_in_one_line(
    tmp_path: Path,
    items: dict[str, str],
    models_dir: Path,  # noqa: F811
) -> None:
    """--output naming a file, or a folder under a file: exit 9 before any work, the file
    untouched."""
    file = tmp_path / "results.txt"
    file.write_text("keep me")
    cases = {file: "is a file, not a folder", file / "out": f"{file} is a file, not a folder"}
    for output, expected in cases.items():
        refused = _cli(output, items["a"], models_dir)
        assert refused.returncode == 9, refused.stderr
        line = _one_error_line(refused.stderr)
        assert line.startswith(f"error: --output {output}") and expected in line, line
        assert line.endswith("choose another --output"), line
        assert refused.stdout == ""
    assert file.read_text() == "keep me"
    assert list(tmp_path.iterdir()) == [file]


@pytest.mark.usefixtures("nrt_models", "items_in_process")
def test_a_full_disk_stops_a_multi_item_run_instead_of_failing_each_item(
    small_fs: Path, items: dict[str, str]
) -> None:
    """Several items on a full disk: the run stops at the first item's fault, exit 9; the
    others are listed as not processed, not as N internal errors. Freed: all are published."""
    from component import pipeline
    from component.params import RunParams

    output = small_fs / "out"
    params = RunParams(output=output, items=(items["b"], items["c"]), resolution=60)
    pipeline.run(RunParams(output=output, items=(items["a"],), resolution=60))
    filler = _fill(small_fs, 100 * 1024)
    with pytest.raises(OutputError) as raised:
        pipeline.run(params)
    assert raised.value.exit_code == 9
    assert str(raised.value).startswith(f"no space left on the device holding {output}")
    summary: dict[str, Any] = raised.value.summary or {}
    reasons = [entry["reason"] for entry in summary["failed"]]
    assert len(reasons) == 2 and reasons[0] == str(raised.value), reasons
    assert reasons[1].startswith("not processed: the run stopped"), reasons
    assert [entry["exit_code"] for entry in summary["items"]] == [9, 9]
    assert not any("internal error" in reason for reason in reasons)
    _nothing_half_written(output)
    assert catalog_problems(output) == [] and len(linked_ids(output)) == 1

    filler.unlink()
    summary_after = pipeline.run(params)
    assert len(summary_after.processed) == 2 and summary_after.failed == []
    assert catalog_problems(output) == [] and len(linked_ids(output)) == 3


def test_environment_faults_are_told_from_bugs_and_input_faults(tmp_path: Path) -> None:
    """The classifier itself: errno first, GDAL's words second; an input's EACCES (a file
    outside the output) or a plain bug is not an output fault."""
    output = tmp_path / "out"
    output.mkdir()
    inside = str(output / ".staging" / "x" / "B04.tif")

    def said(error: BaseException) -> str | None:
        fault = environment_fault(error, output)
        return None if fault is None else str(fault)

    assert "no space left" in str(said(OSError(errno.ENOSPC, "No space left on device")))
    assert "quota" in str(said(OSError(errno.EDQUOT, "Disk quota exceeded", inside)))
    assert "read-only" in str(said(OSError(errno.EROFS, "Read-only file system", inside)))
    assert "no permission" in str(said(PermissionError(errno.EACCES, "denied", inside)))
    assert said(PermissionError(errno.EACCES, "denied", "/data/l1c/B04.jp2")) is None
    assert said(OSError(errno.EIO, "Input/output error", "/data/l1c/B04.jp2")) is None
    assert "failed" in str(said(OSError(errno.EIO, "Input/output error", inside)))
    assert said(ValueError("a bug")) is None
    wrapped = RuntimeError("job failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert "no space left" in str(said(wrapped))

    from rasterio.errors import RasterioIOError

    gdal = RasterioIOError(
        f"Attempt to create new tiff file '{inside}' failed: Read-only file system"
    )
    assert "read-only" in str(said(gdal))
    # GDAL's "Write failed" has no errno: with room on the device it is still the output's
    # fault, named as a failed write (a full disk is told by its free space).
    line = str(said(RasterioIOError("Write failed. See previous exception for details.")))
    assert line.startswith(f"writing into {output} failed") and "--output" in line
    assert said(RasterioIOError("'/data/B04.jp2' not recognized as a supported file")) is None

    error = OutputError("already named")
    assert environment_fault(error, output) is error
    check_output(output)  # a writable folder passes, as does one still to be made
    check_output(tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()
