"""The request portal: a form and a list of requests for service delivery, and a small JSON API
for other systems (ticketing, CRM). Server-rendered with FastAPI and Jinja2; run it with
``python -m portal``."""
