"""Local delivery: a node's subscriptions and the calls to their callbacks.

A subscription's key is an event type, a Channel, or "*" (everything). Each
event type's route (its channel and the subscriptions for the type, the
channel and "*") is looked up once per delivered event, or once per received
run, and rebuilt when subscriptions change. Callbacks are synchronous; an
exception in one is logged and counted, never propagated.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence

import attrs

from node.core.events import Channel, Event

log = logging.getLogger("vsm.node")

Callback = Callable[[Event], None]
Route = tuple[Channel, tuple["Subscription", ...]]

_TYPE, _CHANNEL = operator.itemgetter(0), operator.itemgetter(1)  # Event fields, in C


@attrs.define(eq=False)
class Subscription:
    """A live subscription; ``cancel()`` stops deliveries (idempotent)."""

    key: str | Channel
    callback: Callback
    _owner: LocalDelivery
    active: bool = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            self._owner.unsubscribe(self)


class LocalDelivery:
    """The subscriptions of one node, and delivery to them."""

    def __init__(self, classify: Callable[[str], Channel]) -> None:
        self.classify = classify
        self.subs: dict[str | Channel, list[Subscription]] = {}
        #: event type -> its route; cleared (never rebound) when subscriptions change
        self.routes: dict[str, Route] = {}
        self.errors = 0

    def subscribe(self, key: str | Channel, callback: Callback) -> Subscription:
        sub = Subscription(key, callback, self)
        self.subs.setdefault(key, []).append(sub)
        self.routes.clear()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self.subs.get(sub.key, [])
        if sub in subs:
            subs.remove(sub)
            self.routes.clear()

    def dispatch(self, event: Event) -> None:
        self.dispatch_many((event,))

    def dispatch_many(self, events: Sequence[Event], uniform: bool = False) -> None:
        """Deliver one event, or a received batch in one call. ``uniform``: the
        caller knows that all share the first one's type and channel (one run)."""
        n = len(events)
        if n > 1:
            # A received run: one type and channel for all (known, or checked in
            # C); its route is looked up once, and a lone subscriber gets them in
            # a tight loop. One subscribing from a callback gets the next batch;
            # one cancelled from a callback gets nothing more.
            first = events[0]
            etype, channel = first.type, first.channel
            if uniform or (
                list(map(_TYPE, events)).count(etype) == n
                and list(map(_CHANNEL, events)).count(channel) == n
            ):
                route = self.routes.get(etype)
                if route is None or route[0] is not channel:
                    route = self.route(etype, channel)
                subs = route[1]
                if len(subs) > 1:
                    self.dispatch_each(events)
                elif subs:
                    sub = subs[0]
                    callback = sub.callback
                    for event in events:
                        if not sub.active:
                            break
                        try:
                            callback(event)
                        except Exception:
                            self.errors += 1
                            log.exception("subscriber to %s failed on %s", sub.key, etype)
                return
        self.dispatch_each(events)

    def dispatch_each(self, events: Sequence[Event]) -> None:
        routes = self.routes
        for event in events:
            route = routes.get(event.type)
            if route is None or route[0] is not event.channel:
                route = self.route(event.type, event.channel)
            for sub in route[1]:
                try:
                    sub.callback(event)
                except Exception:
                    self.errors += 1
                    log.exception("subscriber to %s failed on %s", sub.key, event.type)

    def route(self, event_type: str, channel: Channel) -> Route:
        subs = self.subs
        found = (*subs.get(event_type, ()), *subs.get(channel, ()), *subs.get("*", ()))
        route = (channel, found)
        if channel is self.classify(event_type):
            self.routes[event_type] = route
        return route
