"""What Plone's Add-ons panel needs to know of the package's profiles, and
what installing and uninstalling do besides the profiles' files (the
background tasks' PAS plugin, taskuser.py).

Runs on: a Zope worker thread (the control panel asks it)."""

from plone.base.interfaces import INonInstallable
from zope.interface import implementer


@implementer(INonInstallable)
class HiddenProfiles:
    """The uninstall profile is run by the Add-ons panel's Uninstall
    button, never offered as an add-on of its own."""

    def getNonInstallableProfiles(self):
        return ["collective.futures.plone:uninstall"]


def post_install(tool):
    """The default profile ran (``tool``: the site's portal_setup): the
    background tasks' user plugin."""
    from .taskuser import install
    install(_site(tool))


def post_uninstall(tool):
    from .taskuser import uninstall
    uninstall(_site(tool))


def _site(tool):
    from Acquisition import aq_inner, aq_parent
    return aq_parent(aq_inner(tool))
