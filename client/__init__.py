"""The developer-side `lager` CLI (synchronous, paramiko)."""
