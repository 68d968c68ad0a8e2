"""The deterministic core: history, commands, the orchestration context and the replay
executor. Pure: no I/O, no clock, no threads, no asyncio."""
