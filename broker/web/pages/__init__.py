"""The manager pages: server-rendered HTML over the same services as the API.

Handlers parse, call a service, render. Templates are plain strings filled by
`broker.web.pages.html`, which escapes every value; the only scripts and styles are the
files in `broker/web/static/`, so the pages' Content-Security-Policy needs no
`unsafe-inline`.
"""
