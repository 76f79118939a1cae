"""The commissioning page, served by the daemon (``[ui]``, the ``ui`` extra): what the camera and the model
see, and the decisions made. `state` holds what the page shows (the frame loop writes it), `server` serves
it with Starlette and uvicorn on a thread of its own."""
