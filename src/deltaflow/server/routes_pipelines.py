"""Pipelines: those a tenant may run, one of them (secrets masked), and validation of an
uploaded pipeline file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from deltaflow.errors import Code, ServiceError
from deltaflow.ops import service_pipelines
from deltaflow.ops.keys import Principal
from deltaflow.server.auth import needs_read, state, tenant_for
from deltaflow.server.handlers import diagnostics, errors
from deltaflow.server.models import ErrorOut, PipelineDetailOut, PipelineOut, ValidationOut

router = APIRouter(prefix="/pipelines", tags=["pipelines"])
Reader = Annotated[Principal, Depends(needs_read)]
MAX_UPLOAD = 1_000_000

_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-yaml": {"schema": {"type": "string"}}},
    }
}


@router.get("", response_model=list[PipelineOut], responses=errors(404, 422))
def list_pipelines(
    request: Request,
    principal: Reader,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[PipelineOut]:
    """The pipelines the tenant may run, by path under the config folder."""
    tenant = tenant_for(request, principal, tenant_id)
    found = service_pipelines.list_pipelines(state(request).service, tenant)
    return [PipelineOut(**vars(p)) for p in found]


@router.post(
    "/validate",
    response_model=ValidationOut,
    responses=errors(422),
    openapi_extra=_YAML_BODY,
)
async def validate(request: Request, principal: Reader) -> ValidationOut | JSONResponse:
    """Check an uploaded pipeline file (the YAML text as the body) with the same file:line
    messages as ``deltaflow validate``; 422 lists its problems."""
    raw = await request.body()
    if len(raw) > MAX_UPLOAD:
        raise ServiceError(
            f"the pipeline file is {len(raw)} bytes; at most {MAX_UPLOAD} are taken",
            hint="send one pipeline file",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError(
            "the body is not UTF-8 text", hint="send the pipeline file's YAML text, UTF-8"
        ) from None
    found = await run_in_threadpool(service_pipelines.validate_text, text)
    if not found:
        return ValidationOut(valid=True, diagnostics=[])
    body = ErrorOut(
        code=str(Code.CONFIG_INVALID),
        message=f"{len(found)} problem(s) in the pipeline file",
        hint="fix each problem at its file:line",
        diagnostics=diagnostics(found),
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=422)


@router.get("/{pipeline_path:path}", response_model=PipelineDetailOut, responses=errors(404, 422))
def show_pipeline(
    pipeline_path: str,
    request: Request,
    principal: Reader,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> PipelineDetailOut:
    """One pipeline rendered for the tenant, secrets masked."""
    tenant = tenant_for(request, principal, tenant_id)
    found = service_pipelines.show_pipeline(state(request).service, tenant, pipeline_path)
    return PipelineDetailOut(**vars(found.info), config=found.config, problems=found.problems)
