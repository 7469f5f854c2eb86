"""The README's "Futures in a view" (snippet ``weather-view``): its
``fetch_json`` and ``WeatherView``, as written, calling the test's local
upstream instead of ``https://api.example.org/weather``. The README's
ZCML (``weather-zcml``) registers ``.views.WeatherView`` from here.

Runs on: a Zope worker thread (the view); fetch_json on the side pool.
"""

from . import local_upstream, run_snippet


#: The upstream the README shows.
README_UPSTREAM = "https://api.example.org/weather"

run_snippet("weather-view", globals(),
            replace=(README_UPSTREAM, local_upstream() + "/weather"))
