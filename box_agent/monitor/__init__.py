"""The per-run monitor: the script's parent, one small single-threaded process per run.

Two implementations of one protocol: in C (monitor.c, json.c, process.c, log.c: ~0.2 MiB a
run, the one runs use) and in Python (loop.py, process.py: a whole interpreter, ~8 MiB, the
fallback where no C compiler was ever available). box_agent/monitor_build.py picks and builds.
A change to what a monitor says or does goes into both.

Why a process of its own (as podman's conmon is):
- The agent is multi-threaded, and the kernel sends a parent-death signal once per dying
  *thread* of the parent, so a script parented by the agent got SIGINT up to four times when
  the agent was killed. The monitor has one thread and exists for its run alone.
- It holds what must outlive the agent and the client: the script's exit code, its output (a
  log on disk, `box_agent/runlog.py`), and the script's end of its breakpoint link. A run goes
  on when the agent dies; a new agent reconnects through the monitor's socket and carries on.
- It is a child subreaper, so descendants the script starts (forked, `setsid`'d, daemonised)
  stay reachable: a signal from the agent reaches them all, and when the script exits they are
  swept (SIGTERM, then SIGKILL) before the run counts as ended.

Run as `python -m box_agent.monitor CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV...` with the
script's env, cwd anywhere. IDENTITY is `UID:GID:GROUP,...` to drop to (box_agent/privsep.py),
or `-`. MONITOR_DIR (0700, the agent's) holds the log, `status.json` once the script has exited,
and `sock`, where a new agent connects.

Messages (one JSON object per SOCK_SEQPACKET datagram, typed in `lager.protocol.link`):
- monitor -> agent: hello {pid, end, pause, paused_at, banner_at} on every connection; output
  {end}; script {body, at, banner_at} (a message from the script's link); link_closed; exit
  {status, end}; failed {error} (the script could not start).
- agent -> monitor: signal {sig}; window {until: offset or null}; to_script {body} with any
  file descriptors (a console's socket) as SCM_RIGHTS.
- monitor -> script: placed {seq}, once it has put the banner the script sent on stderr.
"""
