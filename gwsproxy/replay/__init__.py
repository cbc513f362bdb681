"""Replay: a mock GWS answering from captures (`mock`, `gwsproxy serve`) and regression replay
of a capture against a GWS (`regress`, `gwsproxy replay`).
"""
