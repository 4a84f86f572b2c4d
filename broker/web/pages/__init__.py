"""The manager pages: server-rendered HTML over the same services as the API.

Handlers parse, call a service, render; no page reads a table (the services own their
transactions). Templates are Jinja2 files in `broker/web/templates/`, autoescaped
(`broker.web.pages.html`); the only scripts and styles are the files in
`broker/web/static/`, so the pages' Content-Security-Policy needs no `unsafe-inline`.
"""
