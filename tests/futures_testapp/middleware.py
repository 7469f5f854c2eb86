"""A WSGI middleware that wraps the body iterable (as compressing or
profiling middleware do), for the stream iterator's warning test.
A PasteDeploy filter factory: ``use = call:futures_testapp.middleware:make_filter``.
"""


def make_filter(global_conf, **local_conf):
    def filter_(app):
        def wrapping(environ, start_response):
            body = app(environ, start_response)

            def wrapped():
                try:
                    yield from body
                finally:
                    close = getattr(body, "close", None)
                    if close is not None:
                        close()

            return wrapped()

        return wrapping

    return filter_
