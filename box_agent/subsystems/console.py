"""`console`: relay an SSH channel to the Python console inside a paused script."""
from __future__ import annotations

import asyncio

import asyncssh

from .common import Context


async def handle_console(ctx: Context) -> None:
    run = await ctx.run_from_request()
    link = run.paused_link()
    pty = ctx.process.get_terminal_type() is not None
    cols, rows = (ctx.process.get_terminal_size()[:2] if pty else (80, 24))
    sock = link.open_console(pty, cols or 80, rows or 24)
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    async def upstream() -> None:
        """Client keystrokes to the console; EOF from the client becomes EOF to the console."""
        if ctx.pending:  # lines sent right behind the id line
            writer.write(ctx.pending)
            ctx.pending = b""
        while True:
            try:
                data = await ctx.process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged:
                continue  # unhandled, asyncssh would drop the whole connection
            except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                data = b"\x03"  # a break or signal from the client means interrupt
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

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
