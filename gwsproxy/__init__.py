"""gwsproxy: record, inspect and replay GWS user-data requests and their CometD notifications."""

__version__ = "0.1.0"
