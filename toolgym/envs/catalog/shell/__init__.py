"""Shell tasks with verifiable outcomes, run in real sandboxes (``toolgym/shell-v0``)."""
