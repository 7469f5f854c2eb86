"""Run by ``zconsole run etc/zope.conf make_site.py FEED_URL``: a classic
Plone site with plone.app.caching on, the news feed record, a member."""

import inspect
import os
import sys

import transaction
from AccessControl.SecurityManagement import newSecurityManager
from Testing.makerequest import makerequest

from Products.CMFPlone.factory import addPloneSite


feed_url = sys.argv[-1]
app = makerequest(app)  # noqa: F821 - zconsole provides app
admin = app.acl_users.getUserById("admin")
newSecurityManager(None, admin.__of__(app.acl_users))
if "distribution_name" in inspect.signature(addPloneSite).parameters:
    # Plone 6.1 and newer: sites come from distributions.
    site = addPloneSite(app, "Plone", distribution_name="classic",
                        setup_content=False)
else:
    # Plone 6.0: a classic site with the profiles its add-site form installs
    # by default (Barceloneta; plone.app.caching is run below).
    site = addPloneSite(app, "Plone", setup_content=False,
                        extension_ids=("plonetheme.barceloneta:default",))

for profile in ("collective.futures.plone:default", "plone.app.caching:default",
                "plone.app.caching:without-caching-proxy"):
    site.portal_setup.runAllImportStepsFromProfile(f"profile-{profile}")

from plone.registry.interfaces import IRegistry  # noqa: E402
from zope.component import getUtility  # noqa: E402
from zope.component.hooks import setSite  # noqa: E402

setSite(site)
registry = getUtility(IRegistry)
registry["collective.futures.news_feed_url"] = feed_url  # from our profile
# Caching on, as the suite checks it; FUTURES_PLONE_CACHING=off: off (the
# fragments benchmark measures rendering, not plone.app.caching's RAM cache).
registry["plone.caching.interfaces.ICacheSettings.enabled"] = (
    os.environ.get("FUTURES_PLONE_CACHING", "on") != "off")

site.portal_registration.addMember("jane", "jane-Secret-1", properties={
    "username": "jane", "email": "jane@example.org", "fullname": "Jane"})
# A folder where jane may add content (test_plone_tasks.py).
site.invokeFactory("Folder", "work", title="Work")
site.work.manage_setLocalRoles("jane", ["Contributor", "Editor", "Reader"])
site.work.reindexObjectSecurity()
# As on a Volto site: everyone may use the REST API (what a service
# returns is the service's own decision: test_plone_tasks.py).
site.manage_permission("plone.restapi: Use REST API",
                       ["Anonymous", "Authenticated", "Manager"], acquire=0)
# The fragment portlet (docs/fragments.rst) in the right column of the
# site's root; it shows only when a request asks for it (?prices=1).
from futures_plone_app.views import PricesAssignment  # noqa: E402
from plone.portlets.interfaces import IPortletAssignmentMapping  # noqa: E402
from plone.portlets.interfaces import IPortletManager  # noqa: E402
from zope.component import getMultiAdapter  # noqa: E402

column = getUtility(IPortletManager, name="plone.rightcolumn", context=site)
getMultiAdapter((site, column), IPortletAssignmentMapping)["prices"] = PricesAssignment()
transaction.commit()
print("SITE READY")
