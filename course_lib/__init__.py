"""course_lib: the small helper package of the Style and Content, Texture Synthesis course kit.

It holds what is *not* the subject of a lesson and is needed in more than one notebook:
devices and seeding (`device`), image conversion (`images`), named sample images (`samples`),
VGG-19 features (`features`), image optimisation (`optim`), network building blocks (`nets`),
display (`display`), widgets (`widgets`) and visible-test checks (`grading`).

The graded techniques (Gram matrices, the quilting seam, cycle / adversarial losses, PatchNCE)
are never here: they are built in the notebooks and in ``solutions/``.

Nothing is downloaded, seeded or configured at import time.
"""

__version__ = "0.1.0"
