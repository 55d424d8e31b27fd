"""The developer-side `lager` CLI (synchronous, paramiko)."""

# Ctrl-C, wherever it lands: the shell's code for "ended by SIGINT" (ISSUE-NOTES 1).
EXIT_INTERRUPTED = 130
