"""Views for the Plone integration tests."""
