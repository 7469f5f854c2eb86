"""What Plone's Add-ons panel needs to know of the package's profiles.

Runs on: a Zope worker thread (the control panel asks it)."""

from plone.base.interfaces import INonInstallable
from zope.interface import implementer


@implementer(INonInstallable)
class HiddenProfiles:
    """The uninstall profile is run by the Add-ons panel's Uninstall
    button, never offered as an add-on of its own."""

    def getNonInstallableProfiles(self):
        return ["collective.futures.plone:uninstall"]
