"""Our own re-implementations of popular public codes' published loops, timed beside the kit's
code in the same run (see benchmarks/README.md). Not used by the notebooks."""
