"""The bench API a script uses: nets, their instruments, and who claims them."""
