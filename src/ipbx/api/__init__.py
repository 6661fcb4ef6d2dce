"""The API layer: REST endpoints, the WebSocket event feed and webhooks.

It sees the PBX only through the services of api/services.py (docs/architecture.md): it
reads their state and subscribes to the event bus; it never reaches into SIP or media.
"""
