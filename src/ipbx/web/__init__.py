"""The web administration: server-rendered pages (Jinja2) on the API listener, for the
users `ipbx user create` makes. They change the configuration through the same service
layer as the REST API (api/configuration.py)."""
