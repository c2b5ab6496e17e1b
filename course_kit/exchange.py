"""What nbgrader's exchange needs beside a graded notebook, after ``course-kit grade``.

nbgrader's own ``autograde`` copies every file of ``submitted/<student>/<id>/`` that is not a
notebook into ``autograded/``, and ``generate_feedback`` copies them on into ``feedback/``
(``nbgrader.converters.base.BaseConverter.init_assignment``). Two of them matter later:
``release_feedback`` reads ``timestamp.txt`` and ``submission_secret.txt`` from each feedback
folder (the secret names the released page, so only the student who submitted finds it). The
kit's sandboxed grade builds ``autograded/`` and ``feedback/`` itself, so it copies those two
files the same way (:func:`keep_submission_files`, one call at the end of ``grade``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: the files nbgrader's exchange writes next to a submission that ``release_feedback`` reads
EXCHANGE_FILES = ("timestamp.txt", "submission_secret.txt")


def keep_submission_files(paths, assignment: str, students) -> list[Path]:
    """Copy ``timestamp.txt`` and ``submission_secret.txt`` from each student's submitted
    folder into their ``autograded/`` and ``feedback/`` folders (those that exist), as nbgrader's
    ``autograde`` and ``generate_feedback`` do, so that ``nbgrader release_feedback`` (and the
    Formgrader's "Release Feedback") works after ``course-kit grade``.

    Args:
        paths: the course's :class:`course_kit.instructor.CoursePaths`.
        assignment: the assignment id.
        students: the student ids graded in this run.

    Returns:
        The files written. A file the submission lacks (an LMS upload has no secret) is skipped;
        a folder that does not exist (a student whose notebook could not be graded has no
        ``autograded/``) is not made.
    """
    written = []
    for student in students:
        source = paths.submitted(student, assignment)
        for folder in (paths.autograded(student, assignment), paths.feedback(student, assignment)):
            if not folder.is_dir():
                continue
            for name in EXCHANGE_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, folder / name)
                    written.append(folder / name)
    return written
