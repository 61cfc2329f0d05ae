"""svc_stream: the WebSocket market-data feeds, relayed from the `md.*` NATS subjects.

One NATS subscription per subject for the whole service, fan-out in memory, and a bounded
queue with its own writer per client, so a slow client never slows the others.
"""
