"""``GET @futures-task/<id>``: a background task's status for plone.restapi
clients (Volto), as ``taskqueue.status`` gives it.

Runs on: a Zope worker thread (plone.restapi installed).

Who may read it: the user who queued the task (same user folder, same
id), a user with "Manage portal" on the site, and, for a task queued
anonymously, whoever knows its id (128 random bits). Anyone else, like
an unknown id, gets a 404: the answer does not say that the task exists.
"""

from AccessControl import getSecurityManager
from plone.restapi.services import Service
from zExceptions import NotFound
from zope.interface import implementer
from zope.publisher.interfaces import IPublishTraverse

from ..runtime import get_tasks
from ..taskqueue import status


@implementer(IPublishTraverse)
class TaskStatus(Service):

    def __init__(self, context, request):
        super().__init__(context, request)
        self.task_id = None

    def publishTraverse(self, request, name):
        if self.task_id is not None:
            raise NotFound(name)  # one id, nothing below it
        self.task_id = name
        return self

    def reply(self):
        if not self.task_id:
            raise NotFound("@futures-task/<id>")
        stored = get_tasks().backend.status(self.task_id)
        if stored is None or not self._may_read(stored):
            raise NotFound(self.task_id)
        return status(self.task_id)

    def _may_read(self, stored):
        user = stored.get("user")
        security = getSecurityManager()
        if security.checkPermission("Manage portal", self.context):
            return True
        if user is None:
            return True
        current = security.getUser()
        folder = current.aq_parent if hasattr(current, "aq_parent") else None
        path = "/".join(folder.getPhysicalPath()) if hasattr(folder, "getPhysicalPath") else ""
        return current.getId() == user["id"] and path == user.get("folder")
