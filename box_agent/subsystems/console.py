"""`console`: relay an SSH channel to the Python console inside a paused script.

Towards the script the relay speaks lager.console.wire: keystrokes, the window size (from the
PTY request, then at every change) and breaks/signals each go as a frame, so the console's line
editor can wrap at the real width and Ctrl-C from any client reaches it.
"""
from __future__ import annotations

import asyncio

from lager.console import wire

from .common import Context, Interrupt, WindowChange


async def handle_console(ctx: Context) -> None:
    run = await ctx.run_from_request()
    link = run.paused_link()
    pty = ctx.process.get_terminal_type() is not None
    cols, rows = wire.clamp_size(*ctx.process.get_terminal_size()[:2]) if pty else \
        (wire.DEFAULT_COLS, wire.DEFAULT_ROWS)
    sock = link.open_console(pty, cols, rows)
    # Audited and told only once the console is open: a refused one (no console at this
    # pause) did nothing to the run, so there is nothing to record or tell its holder.
    ctx.reservations.operated(ctx.caller, "console", run)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    if pty:
        writer.write(wire.window(cols, rows))

    async def upstream() -> None:
        """Client keystrokes to the console; EOF from the client becomes EOF to the console.
        Lines sent right behind the id line come first (the reader holds them)."""
        try:
            while await relay_one():
                await writer.drain()
        except (ConnectionError, OSError):
            return  # the script closed the console (resume, exit()): downstream ends it

    async def relay_one() -> bool:
        data = await ctx.read_input(65536)
        if isinstance(data, WindowChange):
            writer.write(wire.window(data.cols, data.rows))
            return True
        if isinstance(data, Interrupt):
            writer.write(wire.interrupt())
            return True
        if not data:
            if writer.can_write_eof():
                writer.write_eof()
            return False
        writer.write(wire.data(data))
        return True

    async def downstream() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            ctx.process.stdout.write(data)
            await ctx.process.stdout.drain()

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    gone = asyncio.ensure_future(ctx.process.wait_closed())
    try:
        # The console ends when the script closes it (EOF, exit(), resume) or the client goes.
        await asyncio.wait([down, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down, gone):
            task.cancel()
        writer.close()
    if not ctx.process.is_closing():
        ctx.process.exit(0)
