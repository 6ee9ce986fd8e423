"""The `factory` command: service delivery's and the architect's way in, on any backend."""
