"""Page templates and restricted code: named promises only, no callables;
promises run with no user and no request."""

import urllib.parse

import pytest



pytestmark = pytest.mark.functional


def add_template(zope, name, text):
    """A through-the-web (restricted) Page Template, added by the Manager."""
    body = urllib.parse.urlencode({"id": name, "title": name, "text": text}).encode()
    status, _, _ = zope.request(
        "/manage_addProduct/PageTemplates/manage_addPageTemplate",
        method="POST", body=body, headers={
            **zope.admin_headers(),
            "Content-Type": "application/x-www-form-urlencoded"})
    assert status in (200, 302), status



def test_a_file_system_view_template(zope):
    status, body = zope.get("/@@fs-template?text=hello")
    assert status == 200
    assert '<p id="shout">HELLO</p>' in body
    assert "PLACEHOLDER" not in body


def test_a_through_the_web_template_submits_a_named_promise(zope):
    add_template(zope, "ttw_ok", (
        '<p tal:define="f nocall:context/@@futures" tal:content="python: '
        "f.resultOrSubmit('k', 'PLACEHOLDER', 'upper', 'through the web')\">x</p>"))
    assert zope.get("/ttw_ok") == (200, "<p>THROUGH THE WEB</p>")
    # result() in a template, with a default in the first pass.
    add_template(zope, "ttw_result", (
        '<p tal:define="f nocall:context/@@futures; '
        "s python: f.submit('k', 'upper', 'two') if f.result('k') is None else None\" "
        "tal:content=\"python: f.result('k', 'PLACEHOLDER')\">x</p>"))
    assert zope.get("/ttw_result") == (200, "<p>TWO</p>")


@pytest.mark.parametrize("name, expression", [
    ("lambda", "f.submit('k', lambda: 1)"),
    ("builtin", "f.submit('k', len, 'abc')"),
    ("persistent_method", "f.submit('k', context.objectIds)"),
    ("unregistered", "f.submit('k', 'no-such-promise')"),
    ("persistent_argument", "f.submit('k', 'upper', context)"),
    ("nested_persistent_argument", "f.resultOrSubmit('k', None, 'upper', [{'x': context}])"),
    ("permission", "f.submit('k', 'manager-only', 'x')"),
    ("module_api", "modules['collective.futures'].submit('k', len)"),
    # Fragments: a name without a renderer, an argument that is not plain.
    ("fragment_no_renderer", "f.fragment('k', 'upper', 'x')"),
    ("fragment_persistent_argument", "f.fragment('k', 'upper-fragment', context)"),
    ("fragment_lambda", "f.fragment('k', lambda: 1)"),
])
def test_restricted_code_cannot_submit_anything_else(zope, name, expression):
    runs = zope.counters().get("upper.runs", 0)
    add_template(zope, f"ttw_{name}", (
        f'<p tal:define="f nocall:context/@@futures" tal:content="python: {expression}">'
        f"x</p>"))
    status, body = zope.get(f"/ttw_{name}")
    assert status == 401, (status, body[:300])  # Unauthorized
    assert zope.counters().get("upper.runs", 0) == runs  # nothing ran


def test_a_through_the_web_template_fills_a_named_fragment(zope):
    # The positive control of the fragment refusals above.
    add_template(zope, "ttw_fragment", (
        '<p tal:define="f nocall:context/@@futures" tal:content="structure python: '
        "f.fragment('k', 'upper-fragment', '<through the web>')\">x</p>"))
    assert zope.get("/ttw_fragment") == (
        200, "<p><strong class='shout'>&lt;THROUGH THE WEB&gt;</strong></p>")


def test_a_manager_may_submit_a_manager_only_promise(zope):
    add_template(zope, "ttw_manager", (
        '<p tal:define="f nocall:context/@@futures" tal:content="python: '
        "f.resultOrSubmit('k', 'PLACEHOLDER', 'manager-only', 'for managers')\">x</p>"))
    status, _, body = zope.request("/ttw_manager", headers=zope.admin_headers())
    assert (status, body) == (200, b"<p>FOR MANAGERS</p>")


def test_a_promise_runs_with_no_user_and_no_request(zope):
    # The Manager asks; the shared promise runs as nobody and sees no
    # request, so its result cannot leak who asked to the next user.
    status, _, body = zope.request("/@@fs-template", headers=zope.admin_headers())
    assert status == 200
    who = body.decode().split('<p id="who">')[1].split("</p>")[0]
    assert who.startswith("user=Anonymous User; no request: a promise has no request")
    assert "admin" not in who
    # Anonymous gets the kept shared result: the same text, computed once.
    status, body = zope.get("/@@fs-template")
    assert f'<p id="who">{who}</p>' in body


def test_restricted_code_cannot_read_kept_shared_results(zope):
    from collective.futures.zope.named import KEY_PREFIX, NamedPromise

    zope.get("/@@fs-template")  # 'whoami' is now kept, shared
    # The key the kept result is stored under, built by the real code (the
    # fs template calls whoami with no arguments), with and without the
    # prefix of restricted code's keys; and the key the fs template used.
    shared_key = NamedPromise("whoami", None, "zope2.View").shared_key((), {})
    for number, guess in enumerate((shared_key, KEY_PREFIX + shared_key, "who")):
        # Positive control in the same template and request: its own key,
        # submitted in pass 1, does give a result in pass 2; the guess
        # does not.
        add_template(zope, f"ttw_guess{number}", (
            '<p tal:define="f nocall:context/@@futures; '
            "s python: f.submit('mine', 'upper', 'mine') "
            "if f.result('mine') is None else None\" "
            f'tal:content="python: repr((f.result(\'mine\'), f.result({guess!r})))">'
            "x</p>"))
        assert zope.get(f"/ttw_guess{number}") == (200, "<p>('MINE', None)</p>"), guess


def test_trusted_code_cannot_hand_a_promise_the_request_or_the_database(zope):
    assert zope.get("/@@view-method-promise")[1].startswith(
        "TypeError: collective.futures.submit(): fn is a method of a view")
    assert zope.get("/@@persistent-argument")[1].startswith(
        "TypeError: collective.futures.submit(): an argument is a persistent object")


def test_restricted_code_cannot_read_or_replace_the_futures_state(zope):
    # On c8bbd45 the state was in request.environ: a through-the-web
    # template could read it (every result, trusted keys included) and
    # replace it, or set it to None so that the pass with its placeholder
    # was published. It lives where restricted code cannot reach it now.
    add_template(zope, "ttw_state", (
        '<p tal:define="f nocall:context/@@futures; '
        "v python: f.resultOrSubmit('k', 'PLACEHOLDER', 'upper', 'mine'); "
        "seen python: repr(request.environ.get('collective.futures.state')); "
        "gone python: request.environ.update({'collective.futures.state': None})\" "
        "tal:content=\"python: '%s|%s' % (v, seen)\">x</p>"))
    # The positive control and the check in one: the result is rendered
    # (the promise ran, the placeholder pass was not published) and the
    # template saw no state.
    assert zope.get("/ttw_state") == (200, "<p>MINE|None</p>")
    # The request's own attributes are out of reach too.
    for expression in ("request._collective_futures_state",
                       "request['_orig_env']"):
        add_template(zope, "ttw_attr", (
            f'<p tal:content="python: repr({expression})">x</p>'))
        status, body = zope.get("/ttw_attr")
        assert "RequestFutures" not in body and "upper" not in body, expression
        zope.request("/manage_delObjects?ids=ttw_attr",
                     headers=zope.admin_headers())


@pytest.mark.parametrize("path", [
    "/@@futures",
    "/@@futures/resultOrSubmit?key=z&placeholder=p&name=upper&args:list=x",
    "/@@futures/submit?key=z&name=upper",
    "/@@futures/result?key=news",
    "/@@futures/__call__",
    "/@@futures/index_html",
])
@pytest.mark.parametrize("who", ["anonymous", "manager"])
def test_futures_is_never_published_by_url(zope, path, who):
    # Anonymous GET /Plone/@@futures/resultOrSubmit?...&name=rss-feed ran
    # the named promise; /@@futures/result?key=news answered 204.
    runs = zope.counters().get("upper.runs", 0)
    headers = zope.admin_headers() if who == "manager" else {}
    status, _, _ = zope.request(path, headers=headers)
    assert status == 404, (path, who, status)
    assert zope.counters().get("upper.runs", 0) == runs  # nothing ran


def test_futures_still_serves_templates_and_scripts(zope):
    # The positive control of the one above: the same view, by traversal.
    add_template(zope, "ttw_traversal", (
        '<p tal:define="f python: context.restrictedTraverse(\'@@futures\')" '
        "tal:content=\"python: f.resultOrSubmit('k', 'PLACEHOLDER', 'upper', 'by traversal')\">"
        "x</p>"))
    assert zope.get("/ttw_traversal") == (200, "<p>BY TRAVERSAL</p>")
