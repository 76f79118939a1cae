"""Presence mode: an item is what differs from the learned moving belt, followed from the frame it appears to
the frame it has gone (`edge.presence` finds the items in every frame, `edge.tracking` follows them and times
their crossing of the reference line), so two or three items in view at once are two or three items.

While an item is in full view and clear of any other, each frame offers a crop that hugs it, plus the margin
its model was trained with; the most centred view waiting is the one the classifier takes next. The item is
closed when it leaves, or once it has crossed the reference line with ``max_frames`` classified views. What
is not one item never gets a lane: an item that touched another is a reject (``touching``), a blob longer
than the items this line carries is as many touching items as its length holds, a blob longer than the view
(or than the items, before their length is known) is a reject (``too_long``), and so is what was seen too
briefly for its path to give a crossing (``untimed``: mostly a region at the view's edge for a few frames).

Across a restart, one decision per item: the run that stops decides the items in view, timed where their paths
cross the reference line (`stop`); the run that starts picks up what it kept (`edge.line_memory`: the empty belt,
the belt's velocity, the items' lengths), so it sees at once, and leaves the items in view to it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import cv2
import numpy as np

from edge.camera import Frame, crop_roi
from edge.config import PresenceSettings, Roi
from edge.item_lengths import ItemLengths
from edge.item_shapes import ItemView
from edge.items import Item, ItemBook
from edge.line_memory import BeltView, LineMemory
from edge.modes import InView
from edge.motion_blur import MotionBlur
from edge.presence import STAYS_AT_MOST, PresenceDetector
from edge.tracking import BeltTracker, Track

log = logging.getLogger(__name__)

LEAVE_FRAMES = 2  # frames an item may go unseen (a flicker, a dark garment half out of view) before it has left
TOO_LONG = 1.8  # times the line's median item length: not one item ...
BEYOND_LONGEST = 1.25  # ... nor this many times the longest of its last 25 single items (a line of like items)
# ... unless it lies flat, as one piece (its outline fills this share of its rectangle: a photo or a bag, not two
# items at their own angles), on a line whose longest single item is beyond this many times the median (mixed
# lengths: one flat item that long is no surprise); it is then one item, a `too_long` reject
FLAT_FILL, MIXED_LENGTHS = 0.9, 1.3
SPLIT_LONGER_THAN = 1.3  # times the median: a blob this long with a waist is two items
SEAM_SHORTER_THAN = 0.5  # times the median: a band across the belt this short along it is a splice or cleat
UNLEARNED_MAX_LENGTH = 0.8  # share of the ROI along the travel: the longest item before the line's are known
UNLEARNED_SEAM = 0.1  # share of the ROI along the travel: a band across the belt shorter than this, on any line
# an item passes a pixel of the view in its length over the belt's speed: this many times the usual one's (two
# long items touching, their shadows), and this many seconds at least, a pixel unlike the belt is not an item's
PASSES_WITHIN, PASSES_WITHIN_S = 4.0, 2.0


class PresenceMode:
    def __init__(
        self,
        settings: PresenceSettings,
        roi: Roi | None,
        next_item_id: Callable[[], str],
        item_margin: float = 0.0,
        memory: LineMemory | None = None,
    ) -> None:
        self._settings = settings
        self._roi = roi
        self._next_item_id = next_item_id
        self.item_margin = item_margin  # the daemon sets it from config or bundle when a model goes live
        self.detector = PresenceDetector(settings)
        self._tracker: BeltTracker | None = None  # made at the first frame, when the ROI's size is known
        self._items: dict[int, Item] = {}  # id(track) -> its item
        self.lengths = ItemLengths()  # of the line's items along the belt
        self.motion_blur = MotionBlur()  # how far the belt moves in an exposure: the camera's to fix
        self._memory = memory  # keeps the lengths and the empty belt across restarts
        self._view: tuple[tuple[int, int], int] | None = None  # frame size and travel axis the lengths are in
        self._belt_view: BeltView | None = None  # frame size and ROI box the empty belt is learned in
        self._kept_version = 0  # the lengths' version last kept
        self.items_seen = 0
        self._began_at: float | None = None  # the first frame this run took (the frames' clock)
        self._clock = 0.0  # the frames' clock -> the wall clock, as of the last frame
        self._last_at: float | None = None  # the frames' clock at the last frame
        self._frame_s: float | None = None  # seconds from one frame to the next, on average of late
        self.left_to_the_run_before = 0  # items in view at that frame: see on_frame
        self._coming_in: set[int] = set()  # id() of the tracks coming into view at that frame
        self.reference_line = settings.reference_line  # the page may move it (edge.belt_calibration)
        self.mm_per_px = settings.mm_per_px

    @property
    def tracker(self) -> BeltTracker | None:
        return self._tracker

    def on_frame(self, frame: Frame, items: ItemBook) -> None:
        roi = crop_roi(frame.image, self._roi)
        if self._began_at is None:
            self._began_at = frame.captured_at
        if self._tracker is None:  # the first frame, or the first since the ROI moved
            self._recall_belt(frame.image)
        views = self.detector.update(roi)
        self._keep_belt()
        tracker = self._tracker or self._make_tracker(roi, (frame.image.shape[1], frame.image.shape[0]))
        tracker.small_items = not self.detector.banded_lately
        entered, left = tracker.update(views, frame.captured_at)
        if frame.captured_at == self._began_at:
            self._coming_in = {id(track) for track in tracker.tracks if self._coming_in_view(track)}
        direction = tracker.direction
        self.detector.axis = None if direction is None else direction[0]
        if direction is not None:
            self._measured_in((frame.image.shape[1], frame.image.shape[0]), direction[0])
            if not self.detector.standing:  # a standing belt smears nothing
                self.motion_blur.look(roi, direction[0], {id(t): t.view.box for t in tracker.tracks if t.confirmed})
        self.detector.split_longer_than = self._limit(SPLIT_LONGER_THAN, 0.7)
        self.detector.seam_shorter_than = self._seam_shorter_than()
        self.detector.stays_at_most = self._passes_within(frame.captured_at)
        self._divide_too_long(tracker)
        clock = self._clock = frame.wall_time - frame.captured_at  # monotonic -> wall clock, for the PLC
        for track in entered:
            if track.first_seen <= self._began_at and id(track) not in self._coming_in:
                # in view as this run began (seen at once since it starts from the belt it kept): the run
                # before decided it, at its crossing or as it stopped (`stop`), and one item gets one decision;
                # one only coming into view then was never in full view, so never the run before's
                self.left_to_the_run_before += 1
                log.info("presence: an item in view as this run began is left to the run before, which decided it")
                continue
            self.items_seen += 1
            self._items[id(track)] = items.open(self._next_item_id(), first_seen=track.first_seen + clock)
        for track in left:
            if (item := self._items.pop(id(track), None)) is None:
                continue
            self._finish(item, track, clock, frame.wall_time)
            items.close(item)
        for track in tracker.tracks:
            item = self._items.get(id(track))
            if item is None or item.closed_at is not None:
                continue
            if track.in_full_view and not track.touching and item.vote.frames < self._settings.max_frames:
                items.offer(item, self._item_view(roi, track), frame.captured_at, quality=self._centred(track))
            if track.crossed_at is not None and item.vote.frames >= self._settings.max_frames:
                self._finish(item, track, clock, frame.wall_time)
                items.close(item)  # decided now; the item is still followed until it leaves

    def on_tick(self, now: float, items: ItemBook) -> None:
        pass

    def idle(self) -> bool:
        """No item followed (decided ones still in view count: they would be learned into the empty belt)."""
        return not self._items and (self._tracker is None or not self._tracker.tracks)

    def use_roi(self, roi: Roi | None) -> None:
        """Another part of the frame is another empty belt: learn it again."""
        self._roi = roi
        self.detector.reset()
        self._tracker = None
        self.motion_blur.reset()

    def in_view(self) -> list[InView]:
        tracks = self._tracker.tracks if self._tracker is not None else []
        return [
            InView(track.view.box, track.touching, item.vote)
            for track in tracks
            if track.confirmed and (item := self._items.get(id(track))) is not None
        ]

    def state(self) -> str:
        if self.detector.learning:
            return "learning the empty belt"
        count = len(self.in_view())
        seen = "empty belt" if not count else f"{count} item{'s' if count > 1 else ''} in view"
        return f"belt standing, {seen}" if self.detector.standing else seen

    def counts(self) -> dict[str, object]:
        """For stats and /metrics: what a line manager checks the decisions against."""
        tracker = self._tracker
        speed = tracker.speed_px_s if tracker else None
        return {
            "items_seen": self.items_seen,
            "suspected_splits": tracker.fragments if tracker else 0,
            "suspected_merges": tracker.merges if tracker else 0,
            "belt_speed_px_s": None if speed is None else round(speed, 1),
            "item_length_px": None if (usual := self.lengths.usual) is None else round(usual, 1),
            "product_changeovers": self.lengths.changeovers,
            "belt_learned_again": self.detector.relearned,
            "belt_standing": self.detector.standing,
            "motion_blur_px": self.motion_blur.px,
        }

    def use_belt(self, reference_line: float, mm_per_px: float | None) -> None:
        """The reference line and scale set on the page: items crossing from now on are timed on them."""
        self.reference_line, self.mm_per_px = reference_line, mm_per_px
        if self._tracker is not None:
            self._tracker.reference_line = reference_line

    def reference_segment(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The reference line's two ends in ROI pixels, for the page (None until the travel is known)."""
        tracker = self._tracker
        if tracker is None or tracker.direction is None:
            return None
        axis, _ = tracker.direction
        width, height = tracker.roi_size
        at = round(tracker.reference if tracker.direction[1] > 0 else tracker.roi_size[axis] - tracker.reference)
        return ((at, 0), (at, height)) if axis == 0 else ((0, at), (width, at))

    def stop(self, items: ItemBook) -> None:
        """The daemon stops: each item still followed is closed with the crossing its path gives (passed, or
        still due where it is on its way: a decision a PLC pairing by time can place, where it used to have
        none), and what was learned of the line is kept for the next start, however recently it was last kept.
        A restart leaves the items in view to this run (`on_frame`)."""
        tracker = self._tracker
        if tracker is not None:
            for track in tracker.tracks:
                if (item := self._items.pop(id(track), None)) is None or item.closed_at is not None:
                    continue
                if track.crossed_at is None:
                    tracker.time_crossing(track)
                self._finish(item, track, self._clock, time.time())
                items.close(item)
        self._keep(at_once=True)
        self._keep_belt(at_once=True)

    def _coming_in_view(self, track: Track) -> bool:
        """Its box touches the edge items come in at, not the one they leave by (the travel must be known)."""
        tracker = self._tracker
        if tracker is None or tracker.direction is None:
            return False
        axis, sign = tracker.direction
        box, size = track.view.box, tracker.roi_size[axis]
        at_entry, at_exit = (
            (box[axis] <= 0, box[axis + 2] >= size) if sign > 0 else (box[axis + 2] >= size, box[axis] <= 0)
        )
        return at_entry and not at_exit

    def _recall_belt(self, image: np.ndarray) -> None:
        """The empty belt the last run kept for this view (frame size and ROI), for the detector to try."""
        height, width = image.shape[:2]
        box = (0, 0, width, height) if self._roi is None else self._roi.to_pixels(width, height)
        self._belt_view = ((width, height), box)
        kept_for_s = self._settings.kept_belt_for_s
        belt = None if self._memory is None or not kept_for_s else self._memory.recall_belt(self._belt_view, kept_for_s)
        if belt is not None:
            self.detector.start_from(belt)

    def _keep_belt(self, at_once: bool = False) -> None:
        belt = self.detector.checked_belt
        if self._memory is not None and self._belt_view is not None and belt is not None:
            self._memory.keep_belt(self._belt_view, belt, time.monotonic(), at_once=at_once)

    def _keep(self, at_once: bool = False) -> None:
        memory, view = self._memory, self._view
        if memory is None or view is None or self.lengths.version == self._kept_version:
            return
        tracker = self._tracker
        velocity = None if tracker is None or tracker.speed_px_s is None else tuple(tracker.velocity)
        if memory.keep(*view, self.lengths.singles, time.monotonic(), at_once=at_once, velocity=velocity):
            self._kept_version = self.lengths.version

    def _measured_in(self, frame_size: tuple[int, int], axis: int) -> None:
        """The lengths are camera pixels along the travel: recalled from the last run once the view is known,
        forgotten when it changes (another camera size, another travel), kept while the line runs."""
        view = (frame_size, axis)
        if view != self._view:
            if self._view is not None:
                log.warning("presence: the view changed (frame %s, axis %d); learning the items' length again", *view)
                self.lengths.forget()
            self._view = view
            if self._memory is not None and not self.lengths.singles:
                self.lengths = ItemLengths(self._memory.recall(frame_size, axis))
            self._kept_version = self.lengths.version
        else:
            self._keep()

    def _make_tracker(self, roi: np.ndarray, frame_size: tuple[int, int]) -> BeltTracker:
        settings = self._settings
        self._tracker = BeltTracker(
            settings.min_frames,
            LEAVE_FRAMES,
            (roi.shape[1], roi.shape[0]),
            new_item_area=settings.enter_fraction,
            direction=settings.direction,
            reference_line=self.reference_line,
        )
        kept = None if self._memory is None else self._memory.recall_velocity(frame_size)
        if kept is not None:  # the travel known at once: the first items are timed and judged as any other
            self._tracker.start_from(kept)
        return self._tracker

    def _limit(self, times_median: float, configured_share: float) -> float | None:
        """A length along the belt (ROI pixels): that share of max_item_length when it is configured, else
        `times_median` the line's usual item length once known, else that share of most of the ROI (an item
        that long is hardly ever in full view); None while the travel is unknown."""
        tracker = self._tracker
        if tracker is None or tracker.direction is None:
            return None
        along = tracker.roi_size[tracker.direction[0]]
        if self._settings.max_item_length is not None:
            return self._settings.max_item_length * along * configured_share
        usual = self.lengths.usual
        return UNLEARNED_MAX_LENGTH * along * configured_share if usual is None else times_median * usual

    def _passes_within(self, now: float) -> int:
        """Frames an item takes to pass a pixel of the view, at most (`PASSES_WITHIN`), once the belt's speed is
        known; the detector's own figure before."""
        if self._last_at is not None and now > self._last_at:
            step = now - self._last_at
            self._frame_s = step if self._frame_s is None else 0.9 * self._frame_s + 0.1 * step
        self._last_at = now
        tracker, length = self._tracker, self._limit(1.0, 1.0)  # the usual item's length, or the longest expected
        if tracker is None or tracker.speed_px_s is None or length is None or self._frame_s is None:
            return STAYS_AT_MOST
        return math.ceil(max(PASSES_WITHIN_S, PASSES_WITHIN * length / tracker.speed_px_s) / self._frame_s)

    def _seam_shorter_than(self) -> float | None:
        """A band across the belt shorter than this along it (ROI pixels) is a splice or a cleat: a tenth of the
        ROI, or half the line's usual item length once known if more (a line of garments a fifth of the belt wide,
        40-50 px along a 320 px view, took a splice blurred to 24 px for an item, a lane for nothing); None while
        the travel is unknown."""
        tracker = self._tracker
        if tracker is None or tracker.direction is None:
            return None
        usual = self.lengths.usual
        least = UNLEARNED_SEAM * tracker.roi_size[tracker.direction[0]]
        return least if usual is None else max(least, SEAM_SHORTER_THAN * usual)

    def _too_long(self) -> float | None:
        """Longer than this along the belt (ROI pixels) is not one item: `_limit(TOO_LONG)`, and on a line whose
        last 25 single items hardly varied in length (like items, the usual line) also a quarter beyond the
        longest of them, so two short items laid touching are not one item of 1.6 times the usual length."""
        limit = self._limit(TOO_LONG, 1.0)
        longest = self.lengths.longest
        if limit is not None and self._settings.max_item_length is None and longest is not None:
            return min(limit, BEYOND_LONGEST * longest)
        return limit

    def _divide_too_long(self, tracker: BeltTracker) -> None:
        """A region in full view longer than one of this line's items is items laid touching without a waist
        between them: as many as its length holds at the line's usual item length (at least two), each a
        `touching` reject with a crossing time of its own, so a PLC that pairs decisions with items by order
        or by time stays in step. Not before the line's item length is known, nor for a region longer than
        the view (how many it holds cannot be measured), nor for one that is one item all the same
        (`_one_item`): it is rejected as `too_long` when it leaves."""
        too_long, usual = self._too_long(), self.lengths.usual
        if too_long is None or tracker.direction is None or usual is None:
            return
        axis = tracker.direction[0]
        for track in list(tracker.tracks):
            length = track.view.length(axis)
            count = max(2, round(length / usual))
            # each stretch must itself pass as one item, or it would be divided again next frame
            if not track.in_full_view or track.spanned or length <= too_long or length / count > too_long:
                continue
            # seen as one once, it stays one item (a frame of a shaking camera may show it a little less flat)
            track.one_item = track.one_item or self._one_item(track.view, length, usual)
            if not track.one_item:
                tracker.divide_evenly(track, count)
                self.lengths.too_long(length)

    def _one_item(self, view: ItemView, length: float, usual: float) -> bool:
        """Whether a too-long region is one item all the same: no longer than a single item of the line's last
        25 (a line that has carried an item that long carries them: a photo laid flat among cut-out garments,
        0.85-0.95 of the longest, was cut in two, where two laid touching measured 1.27-1.28 of it), or one flat
        thing lying as it is (a photo laid flat, a bag) on a line of mixed lengths: its outline fills its
        rectangle (two items laid touching lie each at its own angle). On a line of like items (its longest
        single within `MIXED_LENGTHS` of the median) it is still two laid touching: two bags laid square, end to
        end, are one rectangle too."""
        longest = max(self.lengths.singles)
        flat = view.fill is not None and view.fill >= FLAT_FILL and longest > MIXED_LENGTHS * usual
        return length <= longest or flat

    def _finish(self, item: Item, track: Track, clock: float, now: float) -> None:
        """What the item's decision needs from its track: when it crossed (else ``now``, when it was last there:
        the decision's deadline counts from it), how fast, whether it is one item. One its path cannot time is
        no lane: no PLC pairing by time could place it, and it was mostly not an item (the belt's edge, a strip
        at the view's end, seen 2-4 frames)."""
        if item.closed_at is not None:
            return
        tracker = self._tracker
        assert tracker is not None
        vote = item.vote
        vote.there_at = now
        if track.crossed_at is not None:
            vote.crossed_at = vote.there_at = track.crossed_at + clock
            speed = tracker.speed_px_s or track.speed_px_s
            vote.belt_speed_px_s = speed
            if speed is not None and self.mm_per_px is not None:
                vote.belt_speed_mm_s = speed * self.mm_per_px
        too_long = self._too_long()
        if track.touching_frames:
            vote.veto = "touching"
        elif track.spanned:
            vote.veto = "too_long"
        elif too_long is not None and track.longest > too_long:
            vote.veto = "too_long"
            self.lengths.too_long(track.longest)
        elif track.crossed_at is None:
            vote.veto = "untimed"
        elif track.longest:
            self.lengths.single(track.longest)

    def _centred(self, track: Track) -> float:
        """1.0 with the item in the middle of the ROI, down to 0.0 at an edge: how good a view this is."""
        tracker = self._tracker
        assert tracker is not None
        axis = (tracker.direction or (0, 1))[0]
        along = tracker.roi_size[axis]
        return max(0.0, 1.0 - abs(track.view.centre[axis] - along / 2) / (along / 2))

    def _item_view(self, roi: np.ndarray, track: Track) -> np.ndarray:
        """The item framed like a product photo: turned upright (items lie at any angle on a belt, product
        photos stand), cut to its box plus the margin; or the whole ROI with crop_to_item off."""
        if not self._settings.crop_to_item:
            return roi
        view = track.view
        if view.tilt == 0.0:
            x0, y0, x1, y1 = view.box
            mx, my = round((x1 - x0) * self.item_margin), round((y1 - y0) * self.item_margin)
            return roi[max(0, y0 - my) : y1 + my, max(0, x0 - mx) : x1 + mx]
        cx, cy, width, height = view.upright
        size = (max(4, round(width * (1 + 2 * self.item_margin))), max(4, round(height * (1 + 2 * self.item_margin))))
        turn = cv2.getRotationMatrix2D((cx, cy), -view.tilt, 1.0)
        turn[:, 2] += (size[0] / 2 - cx, size[1] / 2 - cy)
        return cv2.warpAffine(roi, turn, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
