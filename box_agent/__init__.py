"""The box agent: an asyncssh daemon that runs scripts, serves breakpoints and the bench."""
