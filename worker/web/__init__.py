"""The web console (DESIGN §10): server-rendered pages for the office and payroll admins, on the service
layer. Every view reads the request, calls `worker.service`, and renders a template; the console has no logic
of its own."""
