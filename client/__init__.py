"""The developer-side `lager` CLI (synchronous, paramiko)."""

# Ctrl-C, wherever it lands: the shell's code for "ended by SIGINT" (ISSUE-NOTES 1).
EXIT_INTERRUPTED = 130
# The reader of our stdout went away (`lager nets | head -1`): the shell's code for SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13
