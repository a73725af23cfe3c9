"""Project links: a Procore project linked to a ServiceTrade customer, location and job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.models import ProjectLink


def find_link(s: Session, project_id: int) -> ProjectLink:
    """The link of a Procore project, or a LookupError that says how to make one."""
    links = s.scalars(select(ProjectLink).where(ProjectLink.procore_project_id == project_id)).all()
    if not links:
        raise LookupError(
            f"Procore project {project_id} is not linked yet; run `stsync project link {project_id} --job-type TYPE`"
        )
    if len(links) > 1:
        raise LookupError(f"Procore project {project_id} is linked under several connections")
    return links[0]


def link_of(s: Session, connection_id: int, project_id: int) -> ProjectLink | None:
    """The link of a project under one connection, if there is one (linked to a job or not yet)."""
    return s.scalars(select(ProjectLink).where(
        ProjectLink.connection_id == connection_id, ProjectLink.procore_project_id == project_id)).one_or_none()


def links_by_project(s: Session, connection_id: int) -> dict[int, ProjectLink]:
    """Every link of a connection, by Procore project id."""
    rows = s.scalars(select(ProjectLink).where(ProjectLink.connection_id == connection_id))
    return {link.procore_project_id: link for link in rows}


def save_link(s: Session, connection_id: int, project_id: int, **fields: Any) -> ProjectLink:
    """Record (or complete) the link of a project with the given columns."""
    link = link_of(s, connection_id, project_id) or ProjectLink(connection_id=connection_id,
                                                                procore_project_id=project_id)
    for name, value in fields.items():
        setattr(link, name, value)
    s.add(link)
    s.flush()
    return link
