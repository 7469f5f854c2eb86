"""The demo's background jobs (``@@futures-demo-jobs``): queue a slow
"PDF" job and watch its status move, queue one that keeps failing and
watch it reach the dead letters.

Runs on: a Zope worker thread (the pages, and the jobs: each job is a
task, a request the demo instance's consumer sends to itself).
"""

import json
import os
import time

from collective.futures import taskqueue

from ..runtime import get_tasks


#: The job kinds: how long the job takes, and whether it fails.
KINDS = {"pdf": (3.0, False), "failing": (0.5, True)}


class _View:
    def __init__(self, context, request):
        self.context = context
        self.request = request

    def json(self, data, status=200):
        response = self.request.response
        response.setStatus(status)
        response.setHeader("Content-Type", "application/json")
        response.setHeader("Cache-Control", "no-store")
        return json.dumps(data)


class JobsPage(_View):
    def __call__(self):
        self.request.response.setHeader("Content-Type", "text/html; charset=utf-8")
        with open(os.path.join(os.path.dirname(__file__), "jobs.html"),
                  encoding="utf-8") as page:
            return page.read()


class StartJob(_View):
    """POST ``kind``: queues the job, answers its task's id."""

    def __call__(self):
        if self.request.get("REQUEST_METHOD") != "POST":
            return self.json({"error": "POST a kind"}, 405)
        kind = self.request.form.get("kind")
        if kind not in KINDS:
            return self.json({"error": f"kind: one of {sorted(KINDS)}"}, 400)
        task_id = taskqueue.add("/@@futures-demo-job-run", params={"kind": kind},
                                attempts=3, backoff=1.0)
        return self.json({"id": task_id, "kind": kind})


class RunJob(_View):
    """The job itself (the task's request): works for its kind's time;
    the failing kind then fails (a 500: retried, then a dead letter)."""

    def __call__(self):
        seconds, fails = KINDS.get(self.request.form.get("kind"), (0.0, True))
        time.sleep(seconds)
        if fails:
            raise RuntimeError("the demo's failing job failed, as it always does")
        return "a PDF, burnt"


class JobStatus(_View):
    def __call__(self):
        task_id = self.request.form.get("id")
        found = taskqueue.status(task_id) if isinstance(task_id, str) else None
        if found is None:
            return self.json({"error": "no such job"}, 404)
        return self.json(found)


class DeadJobs(_View):
    def __call__(self):
        return self.json([
            {"id": task["id"], "path": task["path"], "attempts": task["attempts"],
             "last_error": task["last_error"]}
            for task in get_tasks().dead_letters(limit=20)])
