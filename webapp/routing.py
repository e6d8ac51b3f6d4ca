"""Websocket routes (the run consumers are added by the runs app)."""

websocket_urlpatterns: list = []
