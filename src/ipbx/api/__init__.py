"""The API layer (issue 6): REST endpoints, the WebSocket event feed and webhooks.

It talks to the PBX's services only (DESIGN.md): it reads their state and subscribes to
the event bus; it never reaches into SIP or media.
"""
