"""Publish through test browsers, in a process of its own: WebTest and
zope.testbrowser call the Zope WSGI app directly (no server that can
suspend), so futures run in wait mode. Prints one JSON document.

Usage: python wsgi_clients.py INSTANCE_HOME
"""

import json
import sys
import time


def main(home):
    from Zope2.Startup.run import make_wsgi_app
    import webtest
    from zope.testbrowser.browser import Browser

    app = make_wsgi_app({}, f"{home}/etc/zope.conf")
    results = {}

    testapp = webtest.TestApp(app)
    start = time.monotonic()
    response = testapp.get("/@@parallel?n=3&delay=1")
    results["webtest_parallel"] = [response.status_int, response.text,
                                   time.monotonic() - start]
    response = testapp.post("/@@echo", {"a": "1"})
    results["webtest_post"] = [response.status_int, response.json["form"]]
    response = testapp.get("/@@dependent?depth=2")
    results["webtest_dependent"] = [response.status_int, response.text]

    browser = Browser(wsgi_app=app)
    browser.open("http://localhost/@@slow-futures?delay=0.2")
    results["testbrowser_slow"] = [browser.headers["status"], browser.contents]
    browser.handleErrors = False
    browser.open("http://localhost/@@error-promise")
    results["testbrowser_error_promise"] = [browser.headers["status"],
                                            browser.contents]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
