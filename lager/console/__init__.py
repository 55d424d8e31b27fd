"""The in-process console a paused script offers with pause(interactive=True)."""
