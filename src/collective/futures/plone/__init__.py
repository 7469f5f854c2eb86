"""Plone integration: a news view that reads a slow RSS feed through a
shared promise. Loaded only where Products.CMFPlone is installed."""
