"""The explorer (``galclip serve``): a FastAPI app over one embedding catalog and its web page.

:mod:`~galclip.serve.server` (the app, ``create_app``), :mod:`~galclip.serve.protocol` (uvicorn's
HTTP protocols with a read deadline), :mod:`~galclip.serve.limits` (upload checks before any
allocation), :mod:`~galclip.serve.listen` (listening sockets shared by worker processes),
:mod:`~galclip.serve.overlays` (``galclip predict`` / ``galclip outliers`` files shown on the
page) and ``static/`` (the page). Retrieval itself is :mod:`galclip.search`.
"""
