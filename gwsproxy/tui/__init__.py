"""The capture inspector (`gwsproxy tui`): a Textual app over one or more capture files."""
