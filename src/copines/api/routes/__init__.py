"""One module per topic; each exposes `router`."""
