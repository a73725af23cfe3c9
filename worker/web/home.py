"""The home page: each company's daily digest (DESIGN §11) — what must be fixed before payroll, and what was
posted — so the first thing a person sees is what needs them."""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue

from worker.service import digest
from worker.web.calls import attempt


def index() -> ResponseReturnValue:
    digests = attempt(digest.company_digests)
    return render_template("home.html", digests=digests or [])
