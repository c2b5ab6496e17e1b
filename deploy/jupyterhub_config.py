"""JupyterHub for the course kit on one machine (``make hub``; ``course_kit/hub.py``).

Every setting that varies comes from the environment that ``course_kit.hub.hub_environment``
prepares (ports, users, the runtime folder with each role's Jupyter config); the course's own
settings are in ``deploy/settings.json``. On Kubernetes, Zero to JupyterHub's chart replaces the
spawner and the proxy, and ``deploy/values.yaml`` carries the same course settings (a test keeps
the two in step).
"""

import json
import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

runtime = Path(os.environ["COURSE_HUB_RUNTIME"])  # the hub's own state: root only
configs = Path(os.environ.get("COURSE_HUB_CONFIG", runtime))  # each role's config: readable
settings = json.loads((Path(__file__).resolve().parent / "settings.json").read_text())
students = [n for n in os.environ.get("COURSE_HUB_STUDENTS", "").split(",") if n]
instructors = [n for n in os.environ.get("COURSE_HUB_INSTRUCTORS", "").split(",") if n]
python_bin = os.environ["COURSE_HUB_PYTHON_BIN"]

# --- where the hub listens, and its own state (kept in the runtime folder) -----------------------
c.JupyterHub.ip = os.environ.get("COURSE_HUB_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("COURSE_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["COURSE_HUB_HUB_PORT"])
c.JupyterHub.db_url = f"sqlite:///{runtime / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(runtime / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.command = [os.environ["COURSE_HUB_PROXY"]]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['COURSE_HUB_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.pid_file = str(runtime / "proxy.pid")

# --- who may log in -------------------------------------------------------------------------
if os.environ.get("COURSE_HUB_AUTH", "pam") == "shared":
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = os.environ["COURSE_HUB_PASSWORD"]
else:
    c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(students + instructors)

# A service token for scripts (the tests drive the round trip through the REST API with it).
if os.environ.get("COURSE_HUB_API_TOKEN"):
    c.JupyterHub.services = [
        {"name": "course-kit", "api_token": os.environ["COURSE_HUB_API_TOKEN"]}
    ]
    c.JupyterHub.load_roles = [
        {
            "name": "course-kit-service",
            "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "list:users"],
            "services": ["course-kit"],
        }
    ]

# --- each user's server: a local process as that Unix user, in their home, running what
# course_kit.hub.install_runtime put where every user can reach it (never the kit's checkout) ---
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [os.path.join(python_bin, "jupyterhub-singleuser")]
c.Spawner.default_url = settings["default_url"]
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {
    "PATH": python_bin + ":/usr/local/bin:/usr/bin:/bin",
    # The machine's other Jupyter config stays out of students' servers; the kit's env's stays in.
    "JUPYTER_PLATFORM_DIRS": "1",
}


def _role_config(spawner):
    """Students and instructors read different Jupyter config folders (see course_kit.hub)."""
    role = "instructor" if spawner.user.name in instructors else "student"
    spawner.environment = dict(spawner.environment, JUPYTER_CONFIG_PATH=str(configs / role))


c.Spawner.pre_spawn_hook = _role_config
