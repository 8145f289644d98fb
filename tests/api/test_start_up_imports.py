"""Start-up cost of the entry points: the read functions do not load the Cloud Tasks, Firestore or Secret
Manager client libraries (gRPC, protobuf, google-auth) until a request needs them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_entry_points_loads_no_cloud_client_library():
    code = ("import sys, functions.main; "
            "print(','.join(m for m in ('grpc', 'google.cloud.tasks_v2', 'google.cloud.firestore', "
            "'google.cloud.secretmanager', 'google.auth') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == ""


def test_a_cloud_tasks_trigger_builds_its_client_on_first_use(monkeypatch):
    from shared import backends
    from shared.cloud import tasks
    from shared.config import load_settings

    made = []

    class FakeClient:
        def create_task(self, parent, task, timeout):
            made.append(task.name)

    monkeypatch.setattr(tasks, "tasks_client", lambda settings, credential=None: made.append("client") or FakeClient())
    settings = load_settings({"TASK_QUEUE": "cloudtasks://127.0.0.1:1", "TASK_TARGET_URL": "http://drain.example",
                              "GCP_PROJECT": "p"})
    trigger = backends.trigger_from_settings(settings)
    assert made == []  # nothing built at start-up
    assert trigger.request_drain("quote", "quotes", 7)
    assert made[0] == "client" and made[1].endswith("/tasks/drain-quote-7")
