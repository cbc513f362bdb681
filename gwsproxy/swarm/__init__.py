"""`gwsproxy swarm`: a capture replayed as load through Locust (`locustfile.py`), on one machine
or many; the plan of who replays what (`plan.py`, pure), a gevent-friendly GWS client
(`client.py`), and the command line that starts Locust (`command.py`). Locust (and its gevent
monkey patching) is imported by the locustfile only, in Locust's own process."""
