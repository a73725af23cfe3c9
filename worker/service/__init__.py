"""Every use case of a person or a task, as plain functions with typed results that carry names as well as ids.
The CLI, the Celery tasks, the web console and the webhook receivers call only these (DESIGN §1, §10)."""
