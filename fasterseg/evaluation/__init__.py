"""Evaluation: scores of a network on a data set (`scores`) and of a finished training run, with its size and
measured latency, written to its folder (`run`)."""
