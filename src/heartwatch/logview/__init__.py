"""The pure side of live logs: path rules, following rules, the shared line history, colours,
filters, reading the last lines. No I/O here (``tests/test_purity.py`` checks)."""
