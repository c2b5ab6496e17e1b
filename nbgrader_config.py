"""nbgrader's course directory for the kit.

source (instructor notebooks, full solutions + hidden tests)  solutions/<id>/<id>.ipynb
release (student versions, generated, committed)               assignments/<id>/<id>.ipynb
everything made while grading                                  grading/  (git-ignored)

The kit's tools read every path from here (nbgrader's CourseDirectory); change them here only.
Use the kit's commands rather than calling nbgrader by hand: `make release` and
`make grade ASSIGNMENT=<id> SUBMISSIONS=<folder or zip>` (see README.md).
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

_ROOT = os.path.dirname(os.path.abspath(__file__))
_GRADING = os.path.join(_ROOT, "grading")

c.CourseDirectory.root = _ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.solution_directory = "grading/solution"
c.CourseDirectory.source_with_tests_directory = "grading/source_with_tests"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_GRADING, "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# One name for the per-cell timeout, everywhere (the subclass wins over ExecutePreprocessor).
c.Execute.timeout = 30
c.Execute.kernel_name = "python3"
# After a timeout the kernel is interrupted; a kernel slow to answer (busy in C code) must not
# make nbgrader drop the whole notebook: the timed-out cell scores 0 and grading goes on.
c.Execute.raise_on_iopub_timeout = False

# A deleted test cell is put back instead of leaving the grade "needs manual grading".
c.OverwriteCells.add_missing_cells = True

# Anything on stderr scores a grade cell 0: drop the harmless warnings and progress bars.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(UserWarning|DeprecationWarning|FutureWarning|\d+%\|)"

# Feedback must not show hidden tests: neither their source nor their tracebacks.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "course_kit.nbgrader_hooks.HideHiddenTracebacks",  # before the markers are removed
    "nbgrader.preprocessors.ClearHiddenTests",
    "course_kit.nbgrader_hooks.CleanTracebacks",  # no library frames or grader folders
    "course_kit.nbgrader_hooks.CapOutputs",  # no 50 MB pages
    "course_kit.nbgrader_hooks.SanitiseStudentHTML",  # student HTML/JavaScript made inert
    "course_kit.nbgrader_hooks.NameTimeouts",  # a timed-out cell's verdict names the limit
]

# The Formgrader shows the autograded notebook with the instructor logged in: what a student
# wrote (HTML, JavaScript, widgets) is made inert when it is saved, also by the Autograde
# button (course-kit grade does the same in course_kit.instructor._import_executed).
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "course_kit.nbgrader_hooks.SanitiseStudentHTML",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
