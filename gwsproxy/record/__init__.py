"""Recording: the mitmproxy addon, the recording core that turns traffic events into pairs and
capture records, the worker process that runs it, and the `record` and `import` commands."""
