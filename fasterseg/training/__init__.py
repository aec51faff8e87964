"""Training a derived network or a peer from scratch (`trainer`), optionally distilled from a teacher run
(`distill`)."""
