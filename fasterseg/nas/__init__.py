"""The architecture search: the supernet's weight loss (`losses`), the search state and its steps (`searcher`),
what a search records per epoch (`records`), the search run in a folder (`run`), and the pure functions behind
the latency-weight tuning panel (`tuning`)."""
