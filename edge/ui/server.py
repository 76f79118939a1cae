"""The page's web server: Starlette routes, served by uvicorn on a thread of its own.

Routes: ``/`` (the page), ``/snapshot.jpg`` (the newest frame with the ROI and item boxes), ``/api/status``,
``/api/decisions``, ``/api/stats`` (the stats messages of the last hour, for the plots),
``/api/what-if?threshold=`` (the kept decisions at another threshold), ``/crops/<item id>.jpg`` (the crop
the model saw), ``/api/roi`` (GET; POST a new one as fractions of the frame; DELETE: back to
``camera.roi``), ``/api/belt`` (GET; POST a click on the reference line or two points a known length
apart; DELETE: back to ``trigger.presence``'s); for labelling the unsure crops ``/api/crops``,
``/review/<crop id>`` (the image),
``POST /api/crops/<item id>`` (a recent decision's crop joins them), ``POST /api/labels`` and
``/api/labelled.tar.gz``. Every request passes `edge.ui.guard` first (host name, password, origin, body
size, security headers).
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from edge.belt_calibration import BeltCalibration
from edge.config import ConfigError, Roi, UiSettings, validation_problems
from edge.roi_override import RoiOverride
from edge.ui.guard import Guard
from edge.ui.review import Review, ReviewError
from edge.ui.state import LiveView

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
_ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # what item ids look like; nothing else is looked up
_NO_STORE = {"Cache-Control": "no-store"}


def build_app(
    view: LiveView,
    password: str | None,
    review: Review | None,
    roi: RoiOverride,
    belt: BeltCalibration,
    allowed_hosts: list[str],
) -> ASGIApp:
    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_NO_STORE)

    async def snapshot(_request: Request) -> Response:
        jpeg = view.snapshot_jpeg()
        if jpeg is None:
            return PlainTextResponse("no frame yet", status_code=503, headers=_NO_STORE)
        return Response(jpeg, media_type="image/jpeg", headers=_NO_STORE)

    async def status(_request: Request) -> Response:
        return JSONResponse(view.summary(), headers=_NO_STORE)

    async def stats(_request: Request) -> Response:
        return JSONResponse(view.history(), headers=_NO_STORE)

    async def decisions(_request: Request) -> Response:
        return JSONResponse(view.decisions(), headers=_NO_STORE)

    async def what_if(request: Request) -> Response:
        try:
            threshold = float(request.query_params["threshold"])
            if not 0.0 <= threshold <= 1.0:
                raise ValueError
        except (KeyError, ValueError):
            return JSONResponse({"error": "give ?threshold= a number from 0 to 1"}, 400)
        return JSONResponse(view.what_if(threshold), headers=_NO_STORE)

    async def crop(request: Request) -> Response:
        item_id = request.path_params["item_id"]
        jpeg = view.crop_jpeg(item_id) if _ITEM_ID.match(item_id) else None
        if jpeg is None:
            return PlainTextResponse("no such crop", status_code=404)
        # item ids carry the run's random id, so an id's crop never changes: the browser keeps it
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400, immutable"})

    async def region(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(roi.describe(), headers=_NO_STORE)
        try:
            if request.method == "DELETE":
                roi.request(None)
            else:
                roi.request(_drawn_roi(await request.json(), view.summary()["frame"]))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except OSError as exc:
            log.error("the ROI could not be kept: %s", exc)
            return JSONResponse({"error": f"the ROI could not be kept in {roi.path}: {exc.strerror}"}, 500)
        return JSONResponse(roi.describe(), headers=_NO_STORE)

    async def belt_calibration(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(belt.describe(), headers=_NO_STORE)
        try:
            if request.method == "DELETE":
                belt.reset()
            else:
                belt.set(**_belt_values(await request.json(), view.summary()))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except OSError as exc:
            log.error("the belt calibration could not be kept: %s", exc)
            return JSONResponse(
                {"error": f"the belt calibration could not be kept in {belt.path}: {exc.strerror}"}, 500
            )
        return JSONResponse(belt.describe(), headers=_NO_STORE)

    def reviewing() -> Review:
        if review is None:
            raise HTTPException(404, "labelling needs crops.directory set: the unsure crops are saved there")
        return review

    async def unsure(_request: Request) -> Response:
        crops = [
            {"id": c.crop_id, "url": f"/review/{c.crop_id}", "model_said": c.top_label, "item_id": c.item_id,
             "confidence": c.confidence}
            for c in reviewing().unsure()
        ]  # fmt: skip
        return JSONResponse({"labels": list(reviewing().labels), "crops": crops}, headers=_NO_STORE)

    async def send_to_review(request: Request) -> Response:
        item_id = request.path_params["item_id"]
        found = view.kept(item_id) if _ITEM_ID.match(item_id) else None
        if found is None:
            return JSONResponse({"error": f"no recent decision with a crop for {item_id!r}"}, 404)
        try:
            crop = reviewing().add(found[1], found[0])
        except ReviewError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({"crop": crop.crop_id})

    async def unsure_image(request: Request) -> Response:
        try:
            crop = reviewing().find(request.path_params["crop_id"])
        except ReviewError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return FileResponse(crop.path, media_type="image/jpeg")

    async def label(request: Request) -> Response:
        try:
            body = await request.json()
            crops, name = body["crops"], body["label"]
            if not (isinstance(crops, list) and all(isinstance(c, str) for c in crops) and isinstance(name, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected {"crops": ["<crop id>", ...], "label": "<label>"}'}, 400)
        try:
            count = reviewing().label(crops, name, model=view.summary().get("model") or "")
        except ReviewError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({"labelled": count, "label": name})

    async def export(_request: Request) -> Response:
        headers = {"Content-Disposition": 'attachment; filename="labelled.tar.gz"', **_NO_STORE}
        return Response(reviewing().export(), media_type="application/gzip", headers=headers)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/crops", unsure),
            Route("/api/crops/{item_id:str}", send_to_review, methods=["POST"]),
            Route("/review/{crop_id:path}", unsure_image),
            Route("/api/labels", label, methods=["POST"]),
            Route("/api/labelled.tar.gz", export),
            Route("/snapshot.jpg", snapshot),
            Route("/api/status", status),
            Route("/api/decisions", decisions),
            Route("/api/stats", stats),
            Route("/api/what-if", what_if),
            Route("/api/roi", region, methods=["GET", "POST", "DELETE"]),
            Route("/api/belt", belt_calibration, methods=["GET", "POST", "DELETE"]),
            Route("/crops/{item_id:str}.jpg", crop),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    return Guard(app, password, allowed_hosts)


def _drawn_roi(body: Any, frame: dict[str, Any]) -> Roi:
    """A ROI from the page, as fractions of the frame; it must leave room for items in the newest frame."""
    if not isinstance(body, dict) or set(body) != {"x", "y", "width", "height"}:
        raise ValueError('expected {"x": …, "y": …, "width": …, "height": …}, fractions of the frame, and no unit')
    try:
        drawn = Roi.model_validate({**body, "unit": "fraction"})
    except ValidationError as exc:
        raise ValueError("; ".join(validation_problems(exc))) from None
    if frame.get("width"):
        try:
            drawn.to_pixels(frame["width"], frame["height"])
        except ConfigError as exc:
            raise ValueError(str(exc).replace("camera.roi", "the ROI")) from None
    return drawn


def _belt_values(body: Any, now: dict[str, Any]) -> dict[str, float]:
    """What the page marked on the frame (fractions of it), as the calibration's values: a click on the
    reference line -> reference_line along the travel in the ROI; two points a known length apart -> mm_per_px.
    API clients may give reference_line or mm_per_px directly."""
    if not isinstance(body, dict) or not body or not set(body) <= {"reference", "scale", "reference_line", "mm_per_px"}:
        raise ValueError(
            'expected {"reference": {"x", "y"}} or {"scale": {"from": {"x", "y"}, "to": {"x", "y"}, "mm": …}} '
            "(points as fractions of the frame), or reference_line / mm_per_px"
        )
    values = {name: body[name] for name in ("reference_line", "mm_per_px") if name in body}
    width, height = now["frame"]["width"], now["frame"]["height"]
    if ("reference" in body or "scale" in body) and not width:
        raise ValueError("no frame yet: wait for the camera")
    if "reference" in body:
        x, y = _point(body["reference"], "reference")
        if now.get("direction") is None:
            raise ValueError(
                "the belt's travel is not known yet: let a few items pass, or set trigger.presence.direction"
            )
        axis, sign = now["direction"]
        x0, y0, x1, y1 = now["roi"]
        start, end, at = (x0, x1, x * width) if axis == 0 else (y0, y1, y * height)
        share = (at - start) / max(1, end - start)
        values["reference_line"] = share if sign > 0 else 1 - share
    if "scale" in body:
        scale = body["scale"]
        if not isinstance(scale, dict) or set(scale) != {"from", "to", "mm"}:
            raise ValueError('scale: expected {"from": {"x", "y"}, "to": {"x", "y"}, "mm": length}')
        (ax, ay), (bx, by) = _point(scale["from"], "scale.from"), _point(scale["to"], "scale.to")
        pixels = ((bx - ax) * width) ** 2 + ((by - ay) * height) ** 2
        if pixels < 100:
            raise ValueError("scale: mark two points at least 10 pixels apart")
        if not isinstance(scale["mm"], int | float) or isinstance(scale["mm"], bool) or scale["mm"] <= 0:
            raise ValueError(f"scale.mm must be a length above 0, got {scale['mm']!r}")
        values["mm_per_px"] = scale["mm"] / pixels**0.5
    return values


def _point(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, dict) or set(value) != {"x", "y"}:
        raise ValueError(f'{name}: expected {{"x": …, "y": …}}, fractions of the frame')
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in value.values()):
        raise ValueError(f"{name}: x and y are fractions of the frame, 0 to 1")
    return float(value["x"]), float(value["y"])


class UiServer:
    """uvicorn on a daemon thread; start() returns once it listens."""

    def __init__(
        self, settings: UiSettings, view: LiveView, review: Review | None, roi: RoiOverride, belt: BeltCalibration
    ) -> None:
        password = settings.password.get_secret_value() if settings.password else None
        app = build_app(view, password, review, roi, belt, settings.allowed_hosts)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="ui", daemon=True)

    def start(self) -> None:
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.05)
        if not self._server.started:
            raise OSError("the page could not be served (see the error above: port in use?)")
        host, port = self.address
        log.info("commissioning page on http://%s:%s/", host, port)

    @property
    def address(self) -> tuple[Any, int]:
        return self._server.servers[0].sockets[0].getsockname()[:2]

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
