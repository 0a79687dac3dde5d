"""The edge runtime: capture -> encode -> send, with a spool for outages, run as a systemd service.

``pipeline.EdgePipeline`` wires the stages in one place; ``service.run`` adds the heartbeat,
systemd notifications and the drain on shutdown. Each stage has the same ``Stage`` lifecycle.
"""
