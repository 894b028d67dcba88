"""The JSON API for systems (web forms, CRMs): enroll, change a stage, stop, list. Bearer auth.

Enrolling is the speed-to-lead path: the service wakes this process's dispatcher at once, and
on PostgreSQL its NOTIFY wakes every other daemon, so the first touch leaves in well under a
second. Errors are `{"error": "...", "field": "..."}` with a 4xx status (web/errors.py).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from engine.domain.schedule import assume_utc
from engine.domain.states import EnrollmentState
from engine.web.auth import check_token
from engine.web.errors import HttpError
from engine.web.state import nurture, runtime

_bearer = HTTPBearer(auto_error=False, description="Settings.api_token (NURTURE_API_TOKEN)")


def require_token(request: Request,
                  _: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    check_token(request, nurture(request).settings)


router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(require_token)])


class LeadData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: str = Field("", max_length=200)
    last_name: str = Field("", max_length=200)
    company: str = Field("", max_length=200)
    stage: str = Field("", max_length=64, description="Buying stage, e.g. consideration")
    timezone: str = Field("", max_length=64, description="IANA zone, e.g. Europe/Paris")
    owner: str = Field("", max_length=200, description="A rep's name")
    fields: dict[str, Any] = Field(default_factory=dict,
                                   description="Custom fields templates can read")


class EnrollRequest(LeadData):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "email": "ada@example.com", "sequence": "demo-request", "first_name": "Ada",
        "company": "Analytical Engines Ltd", "stage": "consideration",
        "fields": {"use_case": "weekly reporting"}, "source": "web-form"}]})

    email: str = Field(..., max_length=320)
    sequence: str = Field(..., max_length=200)
    source: str = Field("api", max_length=100, description="How the lead came in")


class EnrollResponse(BaseModel):
    status: Literal["enrolled", "already"]
    email: str
    sequence: str
    lead_id: int | None
    enrollment_id: int | None = None
    first_touch_at: datetime | None = None


class StageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: str = Field(..., max_length=64)


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sequence: str | None = Field(None, description="Only this sequence; all when omitted")
    reason: str = Field("manual", max_length=100)


@router.post("/leads/enroll", status_code=201, response_model=EnrollResponse,
             responses={200: {"description": "Already live in the sequence: nothing changed "
                                             "but the lead's fields"}})
def enroll(body: EnrollRequest, request: Request, response: Response) -> EnrollResponse:
    """Enroll a lead (idempotent on email + sequence): 201 enrolled, 200 already enrolled."""
    columns = body.model_dump(exclude={"email", "sequence", "source", "fields"})
    values = {**body.fields, **{k: v for k, v in columns.items() if v}}
    enroller = nurture(request).enroller(runtime(request).wake)
    outcome = enroller.enroll(body.sequence, body.email, values, source=body.source)
    if outcome.status != "enrolled":
        response.status_code = 200
    return EnrollResponse(status="enrolled" if outcome.status == "enrolled" else "already",
                          email=outcome.email, sequence=body.sequence, lead_id=outcome.lead_id,
                          enrollment_id=outcome.enrollment_id,
                          first_touch_at=assume_utc(outcome.due_at))


@router.patch("/leads/{email}", summary="Change a lead's stage")
def patch_lead(email: str, body: StageRequest, request: Request) -> dict[str, Any]:
    """Change the lead's buying stage: its next touch uses that stage's template."""
    lead = nurture(request).lead_changes.set_stage(email, body.stage)
    return {"email": lead.email, "stage": lead.stage}


@router.post("/leads/{email}/stage", summary="Change a lead's stage (POST form)")
def post_stage(email: str, body: StageRequest, request: Request) -> dict[str, Any]:
    """The same as PATCH /api/leads/{email}, for clients that only POST."""
    return patch_lead(email, body, request)


@router.post("/leads/{email}/stop", summary="Stop a lead's sequences")
def stop(email: str, request: Request, body: StopRequest | None = None) -> dict[str, Any]:
    """Stop the lead's live enrollments (one sequence, or all): no more touches."""
    body = body or StopRequest(sequence=None, reason="manual")
    app = nurture(request)
    n = app.lead_changes.stop(email, body.sequence, body.reason)
    if not n and body.sequence:
        _known_sequence(app.catalog, body.sequence, 404)  # a typo must not look like success
    return {"email": email.strip().lower(), "stopped": n}


def _known_sequence(catalog: Any, name: str, status: int) -> None:
    """An error unless `name` is a sequence file's name (loaded or broken)."""
    if name not in catalog.sequences and name not in catalog.broken:
        _unknown("sequence", name, "known sequences", catalog.sequences, status)


def _unknown(field: str, name: str, known_as: str, known: Any, status: int) -> None:
    listed = ", ".join(sorted(known)) or "none"
    raise HttpError(status, f"no {field} named '{name}' ({known_as}: {listed})", field)


@router.get("/leads", summary="List enrollments, newest first")
def leads(request: Request, sequence: str | None = None, state: EnrollmentState | None = None,
          limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    app = nurture(request)
    rows = app.store.reports.enrollments(limit, sequence, state)
    if not rows and sequence:  # a typo must not look like "nobody": enrollments of a
        _known_sequence(app.catalog, sequence, 422)  # removed sequence still list
    return [plain(r) for r in rows]


@router.get("/leads/{email}", summary="One lead: fields, enrollments, touches")
def lead(email: str, request: Request) -> dict[str, Any]:
    from engine.errors import NotFound

    report = nurture(request).store.reports.lead(email)
    if report is None:
        raise NotFound(f"no lead with the address {email.strip().lower()}")
    lead_ = report.lead
    return {
        "lead": {"id": lead_.id, "email": lead_.email, "first_name": lead_.first_name,
                 "last_name": lead_.last_name, "company": lead_.company, "stage": lead_.stage,
                 "timezone": lead_.timezone, "owner": lead_.owner, "source": lead_.source,
                 "fields": dict(lead_.fields)},
        "suppressed": report.suppressed,
        "enrollments": [plain(e) for e in report.enrollments],
        "touches": [plain({"id": t.id, "sequence": t.sequence, "step": t.step,
                           "channel": t.channel, "state": t.state, "subject": t.subject,
                           "planned_at": t.planned_at, "sent_at": t.sent_at})
                    for t in report.touches],
    }


@router.get("/handoffs", summary="Leads who replied, newest first")
def handoffs(request: Request, state: Literal["open", "claimed", "closed"] | None = None,
             rep: str | None = None) -> list[dict[str, Any]]:
    app = nurture(request)
    rows = app.handoffs().list(state, rep)
    reps = [r.name for r in app.settings.reps]
    if not rows and rep and rep not in reps:  # a rep since removed still lists their leads
        _unknown("rep", rep, "configured reps", reps, 422)
    return [plain(asdict(h)) for h in rows]


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-able values; times carry their zone (a naive one is UTC)."""
    return {k: assume_utc(v) if isinstance(v, datetime) else v
            for k, v in row.items() if not isinstance(v, bytes)}
