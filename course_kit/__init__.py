"""The kit's own tooling, apart from what a student imports (``course_lib``).

``instructor`` (release and grade with nbgrader), ``cli`` (the ``course-kit`` command),
``nbgrader_hooks`` (preprocessors named in ``nbgrader_config.py``), ``nbrun`` (execute a notebook
the way the tests and the book do), ``netguard`` (block network sockets), ``book`` (render the
course book). Nothing here is imported by the notebooks or the released assignments.
"""
