"""What nbgrader's exchange needs beside a graded notebook, after ``course-kit grade``.

nbgrader's own ``autograde`` copies every file of ``submitted/<student>/<id>/`` that is not a
notebook into ``autograded/``, and ``generate_feedback`` copies them on into ``feedback/``
(``nbgrader.converters.base.BaseConverter.init_assignment``). Two of them matter later:
``release_feedback`` reads ``timestamp.txt`` and ``submission_secret.txt`` from each feedback
folder (the secret names the released page, so only the student who submitted finds it). The
kit's sandboxed grade builds ``autograded/`` and ``feedback/`` itself, so it copies those two
files the same way (:func:`keep_submission_files`, one call at the end of ``grade``), and for a
submission that came through the exchange records its ``timestamp.txt`` in the gradebook as
nbgrader's autograde does: the Formgrader counts a submission as graded only when the two agree
(else it lists 0 / 0), and lateness is judged from it.
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

    The submission's timestamp goes into the gradebook only for exchange submissions (those
    with ``submission_secret.txt``): an LMS upload's ``timestamp.txt`` may be the grading time.

    Returns:
        The files written. A file the submission lacks (an LMS upload has no secret) is skipped;
        a folder that does not exist (a student whose notebook could not be graded has no
        ``autograded/``) is not made.
    """
    written = []
    stamped = {}
    for student in students:
        source = paths.submitted(student, assignment)
        if (source / "submission_secret.txt").is_file():  # written by nbgrader's submit only
            stamp = paths.coursedir.get_existing_timestamp(str(source))
            if stamp is not None:
                stamped[student] = stamp
        for folder in (paths.autograded(student, assignment), paths.feedback(student, assignment)):
            if not folder.is_dir():
                continue
            for name in EXCHANGE_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, folder / name)
                    written.append(folder / name)
    if stamped:
        _record_timestamps(paths, assignment, stamped)
    return written


def _record_timestamps(paths, assignment: str, stamped: dict) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(paths.db_url, paths.coursedir.course_id) as gradebook:
        for student, stamp in stamped.items():
            try:
                gradebook.find_submission(assignment, student)
            except MissingEntry:
                continue  # never graded: nothing to date
            gradebook.update_or_create_submission(assignment, student, timestamp=stamp)
