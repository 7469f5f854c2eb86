"""A real Plone 6 site: a Zope instance whose site.zcml loads Products
(CMFPlone, and collective.futures through plone.autoinclude, as a Plone
site does), with a site made by ``zconsole run``, served by waitress."""

import pathlib
import subprocess
import sys

from zopeinstance import ZopeInstance, subprocess_env


HERE = pathlib.Path(__file__).resolve().parent

PLONE_SITE_ZCML = """\
<configure xmlns="http://namespaces.zope.org/zope"
           xmlns:five="http://namespaces.zope.org/five"
           xmlns:meta="http://namespaces.zope.org/meta">
  <include package="Products.Five" />
  <meta:redefinePermission from="zope2.Public" to="zope.Public" />
  <five:loadProducts file="meta.zcml" />
  <five:loadProducts />
  <five:loadProductsOverrides />
  <include package="futures_plone_app" />
  <securityPolicy component="AccessControl.security.SecurityPolicy" />
</configure>
"""


class PloneInstance(ZopeInstance):
    def __init__(self, home, feed_url, make_site=True, **kw):
        """``make_site``: false for a second instance on the same ZEO
        database (``zeo_address``), which serves the first one's site."""
        # Chameleon's cache of compiled templates, as production instances
        # have it (cookiecutter-zope-instance sets it). Plone 6.1 makes a
        # new main_template object at each use; without the cache each one
        # compiles, and CPython 3.11's compile() of an AST is not safe in
        # two threads at once ("AST constructor recursion depth mismatch",
        # a SystemError that made concurrent pages fail). With it, the
        # first compile writes a module that later uses import.
        environment = {"CHAMELEON_CACHE": str(pathlib.Path(home) / "var/cache"),
                       **(kw.pop("environment", None) or {})}
        super().__init__(home, futures=False, packages=(),
                         environment=environment, **kw)
        self.feed_url = feed_url
        self.make_site = make_site

    def create(self):
        super().create()
        # No explicit include of collective.futures: Plone's plone.autoinclude
        # must find it (entry point target = plone).
        (self.home / "etc/site.zcml").write_text(PLONE_SITE_ZCML)
        if not self.make_site:
            return self
        env = {**subprocess_env(), **self.environment}
        result = subprocess.run(
            [sys.executable, "-c", "from Zope2.utilities.zconsole import main; main()",
             "run", str(self.home / "etc/zope.conf"), str(HERE / "make_site.py"),
             self.feed_url],
            cwd=self.home, env=env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or "SITE READY" not in result.stdout:
            raise RuntimeError(f"making the Plone site failed:\n{result.stdout}\n"
                               f"{result.stderr}")
        return self

    def host_headers(self, **extra):
        # Plone switches its theme off for 127.0.0.1; localhost keeps it.
        return {"Host": f"localhost:{self.port}", **extra}
