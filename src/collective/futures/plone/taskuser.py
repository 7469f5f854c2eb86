"""A background task's user on a Plone site.

Runs on: the Zope worker publishing a task's request.

A task runs as the user who queued it. What says who that is was signed
by the consumer (tasks/signature.py) and checked when the request started
(zope/tasks.py, ``task_of``); no header a client could send does it.

* ``TaskUserPlugin``, a PAS plugin (extraction and authentication) that
  the add-on's profile puts in the site's ``acl_users``: for a verified
  task request it authenticates the task's user, if that user belongs to
  this user folder (a user of another folder with the same id is not
  taken for them) and still exists.
* ``trust_task_request`` (``IPubAfterTraversal``): plone.protect refuses
  writes without a CSRF token; a verified task request of an
  authenticated user is given the token plone.protect computes for that
  user, as a form the user loaded would carry: its writes pass the check
  because the request is trusted, and the check stays on.
"""

from AccessControl.class_init import InitializeClass
from Products.PluggableAuthService.interfaces.plugins import (
    IAuthenticationPlugin, IExtractionPlugin)
from Products.PluggableAuthService.plugins.BasePlugin import BasePlugin
from zope.interface import implementer

from ..zope.tasks import task_of


PLUGIN_ID = "collective_futures_tasks"
#: The credentials' key (no other extractor makes it).
CREDENTIAL = "collective.futures.task"


@implementer(IExtractionPlugin, IAuthenticationPlugin)
class TaskUserPlugin(BasePlugin):
    """Authenticates a verified task request as the task's user."""

    meta_type = "collective.futures task user"

    def __init__(self, id=PLUGIN_ID, title="collective.futures: background tasks' users"):
        self._setId(id)
        self.title = title

    def extractCredentials(self, request):
        task = task_of(request)
        if task is None or task[2] is None:
            return {}
        folder, user_id = task[2]
        return {CREDENTIAL: task[0], "folder": folder, "user_id": user_id}

    def authenticateCredentials(self, credentials):
        if CREDENTIAL not in credentials:
            return None
        pas = self._getPAS()
        if credentials["folder"] != "/".join(pas.getPhysicalPath()):
            return None
        info = pas._verifyUser(pas.plugins, user_id=credentials["user_id"])
        if info is None:
            return None
        return info["id"], info["login"]


InitializeClass(TaskUserPlugin)


def install(site):
    """Put the plugin in the site's ``acl_users`` and activate it."""
    pas = site.acl_users
    if PLUGIN_ID not in pas.objectIds():
        pas._setObject(PLUGIN_ID, TaskUserPlugin())
    for interface in (IExtractionPlugin, IAuthenticationPlugin):
        if PLUGIN_ID not in pas.plugins.listPluginIds(interface):
            pas.plugins.activatePlugin(interface, PLUGIN_ID)


def uninstall(site):
    pas = site.acl_users
    if PLUGIN_ID in pas.objectIds():
        pas.manage_delObjects([PLUGIN_ID])


def trust_task_request(event):
    """IPubAfterTraversal: see the module's docstring."""
    request = event.request
    task = task_of(request)
    if task is None or task[2] is None:
        return
    from AccessControl.SecurityManagement import getSecurityManager
    from plone.protect.authenticator import createToken
    user = getSecurityManager().getUser()
    if user is None or user.getId() != task[2][1]:
        return  # not authenticated as the task's user: no token
    token = createToken()
    request.form["_authenticator"] = token
    request.set("_authenticator", token)
