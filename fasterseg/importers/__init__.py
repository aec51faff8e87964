"""Converters from the original FasterSeg release's pickled files into the kit's open formats.

These are the only places that read pickles, each through an allow-list of globals.
"""
