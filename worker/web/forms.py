"""The console's forms: each field with the label a person reads and its own error message. Every form that
changes something carries the CSRF token (Flask-WTF checks it for every POST, form or not)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from worker.enums import RULE_ACTIVITIES, WEEKDAYS, PayrollKind, ScheduleKind
from worker.projects import JOB_TYPES
from worker.service.users import MIN_PASSWORD_LENGTH, Role

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class SignInForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("enter your email")])
    password = PasswordField("Password", validators=[DataRequired("enter your password")])
    submit = SubmitField("Sign in")


class ServiceTradeForm(FlaskForm):
    username = StringField(
        "ServiceTrade username", validators=[DataRequired("enter the ServiceTrade username")]
    )
    password = PasswordField(
        "ServiceTrade password", validators=[DataRequired("enter the ServiceTrade password")]
    )
    submit = SubmitField("Sign in to ServiceTrade")


class ProcoreForm(FlaskForm):
    company_id = IntegerField(
        "Procore company ID", validators=[InputRequired("enter the Procore company ID")]
    )
    client_id = StringField("Client ID of the Procore app", validators=[DataRequired("enter the client ID")])
    client_secret = PasswordField(
        "Client secret of the Procore app", validators=[DataRequired("enter the client secret")]
    )
    save = SubmitField("Connect with client credentials")
    authorize = SubmitField("Connect to Procore")


class WebhooksForm(FlaskForm):
    url = StringField("The console's public address (https)", validators=[DataRequired("enter the address")])
    servicetrade = SubmitField("Register the ServiceTrade webhook")
    procore = SubmitField("Register the Procore webhook")


class LinkForm(FlaskForm):
    job_type = SelectField(
        "Job type", choices=[SelectChoice(t, t.replace("_", " ")) for t in JOB_TYPES], default="service_call"
    )
    submit = SubmitField("Sync project to ServiceTrade")


class WindowForm(FlaskForm):
    """A whole window, synced on the workers."""

    start = DateField("From", validators=[Optional()])
    end = DateField("To", validators=[Optional()])
    submit = SubmitField("Sync the whole window")


class SyncEntriesForm(FlaskForm):
    """The manual flow: the ticked clock events (checkboxes named `event`, read as a list) with one cost code
    and one cost type. The choices are set by the view from the project's budgeted Labor cost codes."""

    cost_code = SelectField("Cost code", coerce=int, validate_choice=False)
    cost_type = SelectField("Cost type", coerce=int, validate_choice=False)
    start = DateField("From", validators=[Optional()])
    end = DateField("To", validators=[Optional()])
    submit = SubmitField("Sync Entries to Procore")


class RuleForm(FlaskForm):
    cost_code = SelectField("Cost code", coerce=int, validate_choice=False)
    cost_type = SelectField("Cost type", coerce=int, validate_choice=False)
    activity = SelectField(
        "Activity",
        choices=[SelectChoice("", "any activity")] + [SelectChoice(a.value) for a in RULE_ACTIVITIES],
        default="",
    )
    technician = SelectField(
        "Technician", choices=[SelectChoice("", "any technician")], default="", validate_choice=False
    )
    weekdays = StringField("Weekdays (e.g. mon-fri or sat,sun; empty: every day)", validators=[Optional()])
    start_between = StringField(
        "Starting between (e.g. 18:00-05:00; empty: any time)", validators=[Optional()]
    )
    description = StringField("Description on the timecard", validators=[Optional(), Length(max=500)])
    billable = BooleanField("Billable")
    submit = SubmitField("Add rule")


class ScheduleForm(FlaskForm):
    kind = SelectField(
        "Kind",
        choices=[
            SelectChoice(ScheduleKind.nightly.value, "nightly"),
            SelectChoice(ScheduleKind.weekly.value, "weekly"),
            SelectChoice(ScheduleKind.payroll.value, "after each payroll period"),
        ],
    )
    at = StringField(
        "At (local time, HH:MM)", default="06:00", validators=[DataRequired("enter a time as HH:MM")]
    )
    weekday = SelectField(
        "Weekday (weekly)", choices=[SelectChoice(d, n) for d, n in zip(WEEKDAYS, WEEKDAY_NAMES, strict=True)]
    )
    payroll_kind = SelectField(
        "Payroll period (payroll)", choices=[SelectChoice(k.value) for k in PayrollKind]
    )
    anchor = DateField("First day of a period (biweekly)", validators=[Optional()])
    grace_days = IntegerField("Grace days after the period", default=0, validators=[NumberRange(0, 31)])
    submit = SubmitField("Set schedule")


class UserForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("enter an email")])
    password = PasswordField(
        f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
        validators=[Length(min=MIN_PASSWORD_LENGTH, message=f"at least {MIN_PASSWORD_LENGTH} characters")],
    )
    role = SelectField(
        "Role",
        choices=[
            SelectChoice(Role.payroll.value, "payroll: projects, clock events, runs, ledger"),
            SelectChoice(Role.admin.value, "admin: everything, connections and users included"),
        ],
    )
    submit = SubmitField("Add user")


class ConfirmForm(FlaskForm):
    """A button that changes something (remove, pause, retry): only the CSRF token."""

    submit = SubmitField("Confirm")
