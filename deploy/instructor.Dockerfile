# Instructors' single-user image: the students' image (deploy/Dockerfile) plus the course to
# grade (solutions/ with hidden tests, assignments/, nbgrader_config.py) in /srv/course, which
# the instructor's pod copies into ~/course (0700) on its first start (deploy/values.yaml's
# course-kit-roles hook). It holds the solutions: push it to a PRIVATE registry; only the users
# in custom.instructors get it. Its context is instructor.Dockerfile.dockerignore. From the root:
#   docker build -f deploy/instructor.Dockerfile \
#     --build-arg BASE=registry.example.org/course-kit-singleuser:0.1.0 \
#     -t registry.example.org/private/course-kit-instructor:0.1.0 .
ARG BASE=registry.example.org/course-kit-singleuser:0.1.0
FROM ${BASE}
USER root
COPY --chown=1000:1000 solutions /srv/course/solutions
COPY --chown=1000:1000 assignments /srv/course/assignments
COPY --chown=1000:1000 nbgrader_config.py /srv/course/nbgrader_config.py
# `course-kit grade` and the Formgrader file grades under the exchange's course id
RUN printf "\nc.CourseDirectory.course_id = 'style-content'\n" >> /srv/course/nbgrader_config.py \
    && chmod 0700 /srv/course
ENV JUPYTER_CONFIG_PATH=/etc/course-kit/instructor
USER jovyan
