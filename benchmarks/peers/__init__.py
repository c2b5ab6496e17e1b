"""Faithful re-implementations of peers' published loops, measured beside ours."""
