"""The run's websocket: ``ws/runs/<id>/``. Access is checked before the socket is accepted (another
user's run is refused like a missing one); handlers only pass group events on, with their step.
The only frame it answers is ``{"type": "ping"}``; any other is ignored."""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from webapp.runs import live, selectors


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        user = self.scope.get("user")
        visible = await database_sync_to_async(selectors.run_is_visible)(user=user, run_id=self.run_id)
        if not visible:
            await self.close()  # before accept: the handshake is refused (403), nothing is confirmed
            return
        live.remember_server_loop()
        self.group = live.group_name(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "run": self.run_id})

    async def disconnect(self, code):
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is not None:  # a binary frame means nothing here
            await super().receive(text_data=text_data, **kwargs)

    @classmethod
    async def decode_json(cls, text_data):
        try:
            return json.loads(text_data)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit: no ping
            return None

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def _forward(self, event):
        message = dict(event)
        message["type"] = event["type"].split(".", 1)[1]  # run.metrics -> metrics
        await self.send_json(message)

    async def run_metrics(self, event):
        await self._forward(event)

    async def run_evaluation(self, event):
        await self._forward(event)

    async def run_samples(self, event):
        await self._forward(event)

    async def run_checkpoint(self, event):
        await self._forward(event)

    async def run_status(self, event):
        await self._forward(event)

    async def run_log(self, event):
        await self._forward(event)
