"""The built-in GWS simulator and the simulated agents that drive it."""
