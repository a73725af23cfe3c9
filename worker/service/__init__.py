"""Every use case of a person or a task, as plain functions with typed results that carry names as well as ids.
The CLI, the Celery tasks, the web console and the webhook receivers call only these (DESIGN §1, §10)."""

# Re-exports, written `name as name` so that each one is a deliberate part of the package's interface.
from worker.service.connections import ProcoreConnected as ProcoreConnected
from worker.service.connections import ServiceTradeConnected as ServiceTradeConnected
from worker.service.connections import connect_procore as connect_procore
from worker.service.connections import connect_procore_with_code as connect_procore_with_code
from worker.service.connections import connect_servicetrade as connect_servicetrade
from worker.service.projects import ProjectDetail as ProjectDetail
from worker.service.projects import ProjectListing as ProjectListing
from worker.service.projects import check_project as check_project
from worker.service.projects import link_project as link_project
from worker.service.projects import list_projects as list_projects
from worker.service.projects import list_technicians as list_technicians
from worker.service.projects import show_project as show_project
from worker.service.rules import RuleView as RuleView
from worker.service.rules import add_rule as add_rule
from worker.service.rules import list_rules as list_rules
from worker.service.rules import remove_rule as remove_rule
from worker.service.schedules import ScheduleView as ScheduleView
from worker.service.schedules import list_schedules as list_schedules
from worker.service.schedules import pause_schedule as pause_schedule
from worker.service.schedules import remove_schedule as remove_schedule
from worker.service.schedules import resume_schedule as resume_schedule
from worker.service.schedules import set_schedule as set_schedule
