"""Instrument commands (`lager supply|battery|adc|nets`)."""
from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
