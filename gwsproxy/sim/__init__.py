"""The built-in GWS simulator, the simulated agents that drive it, and the demo."""
