"""Breakpoints inside a script: pause() and its private channel to the agent."""
