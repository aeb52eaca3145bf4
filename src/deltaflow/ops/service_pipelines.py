"""The pipelines a tenant may run: the YAML files under the service's config folder.

A pipeline is named by its path under that folder without the extension
(``gcp/cost/cost_billing`` is ``<configs>/gcp/cost/cost_billing.yml``); a name that
would leave the folder is refused. A top-level folder named after an onboarded tenant
holds that tenant's own pipelines: the tenant names them without the folder
(``<configs>/acme/gcp/cost/cost_billing.yml`` is acme's ``gcp/cost/cost_billing``, and
wins over a shared file of the same name), and no other tenant can list, show or run
them: to another tenant they read exactly like pipelines that do not exist.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from deltaflow.errors import Code, DeltaFlowError, Diagnostic, NotFoundError
from deltaflow.ops.service import Service

EXTENSIONS = (".yml", ".yaml")


@dataclass(frozen=True)
class PipelineInfo:
    """One pipeline file: its path (the name to run it by) and what it says of itself."""

    path: str
    pipeline_id: str | None
    description: str
    valid: bool


@dataclass(frozen=True)
class PipelineDetail:
    """One pipeline as the tenant would run it, secrets masked."""

    info: PipelineInfo
    config: dict[str, Any]
    problems: list[str]


def pipeline_file(svc: Service, tenant_id: str, pipeline_path: str) -> Path:
    """The file of the tenant's ``pipeline_path``: its own under ``<configs>/<tenant_id>``,
    else a shared one outside every tenant's folder; NotFoundError otherwise."""
    missing = NotFoundError(
        f"no pipeline '{pipeline_path}'",
        hint="GET /api/v1/pipelines lists the pipelines you may run",
        code=Code.PIPELINE_NOT_FOUND,
    )
    name = PurePosixPath(pipeline_path)
    if (
        not pipeline_path
        or "\\" in pipeline_path
        or "\x00" in pipeline_path
        or name.is_absolute()
        or any(part in ("..", ".", "") for part in pipeline_path.split("/"))
    ):
        raise missing
    root = svc.configs.resolve()
    tenants = _tenant_folders(svc, root)
    if pipeline_path.split("/")[0] in tenants:
        raise missing
    folders = [root / tenant_id, root] if tenant_id in tenants else [root]
    for folder in folders:
        for ext in EXTENSIONS:
            candidate = (folder / f"{pipeline_path}{ext}").resolve()
            if candidate.is_relative_to(folder) and candidate.is_file():
                return candidate
    raise missing


def list_pipelines(svc: Service, tenant_id: str) -> list[PipelineInfo]:
    """The tenant's own pipelines and the shared ones, by the path it runs them by."""
    root = svc.configs.resolve()
    tenants = _tenant_folders(svc, root)
    shared = (f for f in _files(root) if f.relative_to(root).parts[0] not in tenants)
    found = {_name(root, f): f for f in shared}
    if tenant_id in tenants:
        found.update({_name(root / tenant_id, f): f for f in _files(root / tenant_id)})
    return [_info(name, found[name], tenant_id)[0] for name in sorted(found)]


def show_pipeline(svc: Service, tenant_id: str, pipeline_path: str) -> PipelineDetail:
    """One pipeline rendered for the tenant, secrets masked (references stay unresolved)."""
    file = pipeline_file(svc, tenant_id, pipeline_path)
    info, config, problems = _info(pipeline_path, file, tenant_id)
    return PipelineDetail(info, config, problems)


def validate_text(text: str, name: str = "pipeline.yml") -> list[Diagnostic]:
    """Every problem in an uploaded pipeline, with the same file:line messages as
    ``deltaflow validate`` (``name`` stands for the file)."""
    from deltaflow.config.loader import validate_file

    safe = PurePosixPath(name).name or "pipeline.yml"
    with tempfile.TemporaryDirectory(prefix="deltaflow-validate-") as folder:
        path = Path(folder) / safe
        path.write_text(text, encoding="utf-8")
        found = validate_file(path)
    for diagnostic in found:
        if diagnostic.file == str(path):
            diagnostic.file = safe
    return found


def _files(folder: Path) -> list[Path]:
    found = (p for ext in EXTENSIONS for p in folder.rglob(f"*{ext}"))
    return [p for p in found if p.is_file() and ".venv" not in p.parts]


def _tenant_folders(svc: Service, root: Path) -> set[str]:
    """The top-level folders named after an onboarded tenant."""
    if not root.is_dir():
        return set()
    folders = (p.name for p in root.iterdir() if p.is_dir())
    return {name for name in folders if svc.store.tenant(name) is not None}


def _name(root: Path, file: Path) -> str:
    return file.relative_to(root).with_suffix("").as_posix()


def _info(path: str, file: Path, tenant_id: str) -> tuple[PipelineInfo, dict[str, Any], list[str]]:
    from deltaflow.config.loader import RunContext, load_pipeline

    try:
        loaded = load_pipeline(file, context=RunContext(tenant_id=tenant_id), resolve_secrets=False)
    except DeltaFlowError as exc:
        diagnostics: list[Diagnostic] = getattr(exc, "diagnostics", [])
        for diagnostic in diagnostics:  # the path under configs, not the server's folders
            diagnostic.file = f"{path}{file.suffix}"
        problems = [str(d) for d in diagnostics] or [str(exc)]
        return PipelineInfo(path, None, "", False), {}, problems
    pipeline = loaded.pipeline
    config = pipeline.model_dump(mode="json", exclude_none=True)
    info = PipelineInfo(path, pipeline.pipeline_id, pipeline.description or "", True)
    return info, config, []
