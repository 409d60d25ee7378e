"""The pure core: decisions, state and wire formats. No I/O, no clock, no asyncio here
(``tests/test_purity.py`` checks): every input arrives as an argument, time included."""
