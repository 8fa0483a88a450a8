"""Run DeltaTwin's own library (delta-core) against this component's contract.

This script runs in the interpreter of a separate virtual environment that holds
``delta-core`` (its pins clash with the project's), so ``tests/test_deltatwin.py``
calls it through ``subprocess`` and reads one JSON document from its stdout.
Every check uses delta-core code paths, never a copy of its rules:

``validate MANIFEST``
    JSON-schema check (``check_manifest``) and parse (``delta.manifest.parser.parse``).
``workflow MANIFEST WORKFLOW``
    builds delta-core's ``DeltaOrchestrator`` graph (resolves every ``ref``) and asks
    it whether the graph is a DAG.
``dockerfile MANIFEST``
    the Dockerfile delta-core's ``PythonRunner`` generates for the model.
``command MANIFEST INPUTS_JSON``
    the model command as ``PythonRunner.build_command`` substitutes it.
``run MANIFEST WORKFLOW WORKDIR INPUTS_JSON STORAGE``
    a whole run through ``DeltaOrchestrator.run`` with a job service that executes the
    command with bash in WORKDIR exactly as delta-core's ``DockerJobService`` does in
    the container (``<command> && cp ./<glob>... <output dir>``), so the output
    globs are resolved the way the service resolves them.

INPUTS_JSON maps an input name to ``{"value": ...}`` (primitive), ``{"secret": "..."}``
(encrypted with a throw-away RSA key, as the service stores secrets) or
``{"path": "..."}`` (a ``Data`` input already in storage).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import subprocess
import sys
import types
import uuid
from typing import Any

import rsa
import yaml
from delta.manifest.manifest import check_manifest, read_manifest
from delta.manifest.parser import Manifest, parse


def _validate(manifest_path: str) -> dict[str, Any]:
    data = read_manifest(manifest_path)
    # verbose=True prints one line per schema error; keep stdout for the JSON result.
    errors: list[str] = []
    real_stdout = sys.stdout
    try:
        sys.stdout = io.StringIO()
        valid = check_manifest(data, verbose=True, version=data.get("deltaVersion"))
        errors = [line for line in sys.stdout.getvalue().splitlines() if line]
    finally:
        sys.stdout = real_stdout
    manifest = parse(manifest_path)
    return {
        "schema_valid": bool(valid),
        "schema_errors": errors,
        "name": manifest.name,
        "inputs": {
            k: {"type": v.type, "value": v.value, "description": v.description}
            for k, v in manifest.inputs.items()
        },
        "outputs": {k: {"type": v.type} for k, v in manifest.outputs.items()},
        "models": {
            name: {
                "type": model.type,
                "path": model.path,
                "parameters": model.parameters,
                "inputs": {
                    k: {"type": v.type, "prefix": v.prefix} for k, v in model.inputs.items()
                },
                "outputs": {k: {"type": v.type, "glob": v.glob} for k, v in model.outputs.items()},
            }
            for name, model in manifest.models.items()
        },
    }


def _orchestrator(
    manifest: Manifest, workflow: dict, run_ctx: Any = None, storage: Any = None, jobs: Any = None
) -> Any:
    from delta.run.orchestrator import DeltaOrchestrator

    return DeltaOrchestrator(manifest, workflow, run_ctx, storage, jobs)


def _read_workflow(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _workflow(manifest_path: str, workflow_path: str) -> dict[str, Any]:
    manifest = parse(manifest_path)
    workflow = _read_workflow(workflow_path)
    try:
        orch = _orchestrator(manifest, workflow)
    except (KeyError, ValueError) as exc:
        return {"loaded": False, "error": repr(exc)}
    return {
        "loaded": True,
        "dag": orch.is_valid_dag(),
        "nodes": {
            nid: {
                "kind": type(n.element).__name__,
                "name": n.name,
                "in_ports": [e.to_port for e in n.inputs_edges],
                "out_ports": [e.from_port for e in n.outputs_edges],
            }
            for nid, n in orch.nodes.items()
        },
    }


def _model(manifest: Manifest) -> Any:
    (model,) = manifest.models.values()
    return model


def _dockerfile(manifest_path: str) -> dict[str, Any]:
    from delta.run.job.builder.python_builder import PythonRunner

    return {"dockerfile": PythonRunner(_model(parse(manifest_path))).generate_dockerfile()}


def _install_throwaway_key() -> rsa.PublicKey:
    """Give delta-core a private key without its full service settings (env of a server)."""
    import delta.run.job.builder as builder

    public, private = rsa.newkeys(1024)
    builder._settings = types.SimpleNamespace(private_key=private)
    return public


def _params(spec: dict[str, dict[str, Any]], public: rsa.PublicKey) -> dict[str, Any]:
    from delta.run.api.model import (
        DataParameterModel,
        PrimitiveParameterModel,
        SecretParameterModel,
    )

    params: dict[str, Any] = {}
    for name, s in spec.items():
        if "secret" in s:
            params[name] = SecretParameterModel(
                name=name, type="secret", secret_value=rsa.encrypt(s["secret"].encode(), public)
            )
        elif "path" in s:
            params[name] = DataParameterModel(name=name, type="Data", url=s["path"], path=s["path"])
        else:
            params[name] = PrimitiveParameterModel(name=name, value=s["value"])
    return params


def _command(manifest_path: str, inputs_path: str) -> dict[str, Any]:
    from delta.run.job.builder.python_builder import PythonRunner

    with open(inputs_path) as f:
        spec = json.load(f)
    public = _install_throwaway_key()
    runner = PythonRunner(_model(parse(manifest_path)))
    inputs = _params(spec, public)
    return {
        "command": runner.build_command(inputs=inputs),
        "secure_command": runner.build_command(secure=True, inputs=inputs),
    }


def _run(
    manifest_path: str, workflow_path: str, workdir: str, inputs_path: str, storage_dir: str
) -> dict[str, Any]:
    from delta.run.api.model import RunContextModel
    from delta.run.db.orm import RunStatus
    from delta.run.job import Job, JobService
    from delta.run.storage_manager import DeltaLocalStorageManager

    class LocalBashJobService(JobService):
        """Runs a job like ``DockerJobService`` does, with the model folder as cwd."""

        def __init__(self) -> None:
            super().__init__()
            self.log: list[dict[str, Any]] = []

        async def execute_job(self, job: Job) -> None:
            command = job.command
            if job.outputs:
                # Docker creates a bind-mount's host folder; do the same for the copy target.
                os.makedirs(job.outputs[0].dest, exist_ok=True)
                sources = " ".join(e.src for e in job.outputs)
                command += f" && cp {sources} {job.outputs[0].dest}"
            proc = await asyncio.to_thread(
                subprocess.run,
                ["/bin/bash", "-c", command],
                cwd=workdir,
                capture_output=True,
                text=True,
                check=False,
            )
            self.log.append(
                {
                    "returncode": proc.returncode,
                    "stdout": proc.stdout[-4000:],
                    "stderr": proc.stderr[-8000:],
                }
            )
            job.status = RunStatus.SUCCESS if proc.returncode == 0 else RunStatus.ERROR

        def check_jobs(self) -> None:
            return None

        def shutdown(self) -> None:
            return None

    with open(inputs_path) as f:
        spec = json.load(f)
    public = _install_throwaway_key()
    manifest = parse(manifest_path)
    storage = DeltaLocalStorageManager(base_dir=storage_dir)
    jobs = LocalBashJobService()
    run_ctx = RunContextModel(
        id=str(uuid.uuid4()),
        deltatwin_id=manifest.name,
        owner="tests",
        date_created=dt.datetime.now(dt.timezone.utc),
        inputs=list(_params(spec, public).values()),
    )
    orch = _orchestrator(manifest, _read_workflow(workflow_path), run_ctx, storage, jobs)
    ctx = asyncio.run(orch.run())
    return {
        "status": ctx.status.value,
        "return_code": ctx.return_code,
        "message": ctx.message,
        "outputs": {o.name: o.path for o in ctx.outputs},
        "jobs": jobs.log,
    }


def main(argv: list[str]) -> int:
    """Dispatch a sub-command and print its JSON result."""
    commands = {
        "validate": _validate,
        "workflow": _workflow,
        "dockerfile": _dockerfile,
        "command": _command,
        "run": _run,
    }
    result = commands[argv[0]](*argv[1:])
    # delta-core logs to stdout in places; the JSON document is the last line.
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
