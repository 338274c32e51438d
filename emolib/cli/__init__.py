"""The command line (``emolib COMMAND``): the registry, data and training commands, inference commands."""
