"""The messages of bench/profile_stream.py, and the poller that follows its sampled messages into profiles.

:class:`Plan` says, for message ``n`` of the load, which person it is about and what it carries, so
that the load generator, the poller (each in a child process) and the checks agree without sharing
state. :func:`poll_samples` runs in a child process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import loadgen
import orjson
from stream import XED, run_loop

PROFILE = "https://ns.adobe.com/xdm/context/profile"
ENTITIES = "/data/core/ups/access/entities"
BEFORE = "before"  # the first name of the update samples' persons, sent before the load


@dataclass(frozen=True)
class Plan:
    tag: str  # makes this run's identities and message ids unique
    flow_id: str
    dataset_id: str
    schema_id: str
    org: str
    segment_id: str
    messages: int  # in the load
    samples: int
    per_request: int
    connections: int
    request_rate: float  # requests/s in total
    pool: int  # persons the unsampled messages are about (each created, then updated)
    stride: int  # every stride-th message is a sample

    @classmethod
    def make(
        cls,
        tag: str,
        flow_id: str,
        dataset_id: str,
        schema_id: str,
        org: str,
        segment_id: str,
        messages: int,
        samples: int,
        per_request: int,
        connections: int,
        request_rate: float,
    ) -> Plan:
        stride = max(1, messages // max(1, samples))
        samples = min(samples, messages // stride)
        pool = max(100, messages // 3)  # each pool person gets about three messages, seconds apart
        return cls(
            tag, flow_id, dataset_id, schema_id, org, segment_id, messages, samples, per_request,
            connections, request_rate, pool, stride,
        )  # fmt: skip

    # --- which message is which ---
    def position(self, j: int) -> int:
        """The message number of sample ``j``."""
        return j * self.stride + self.stride // 2

    def sample_at(self, n: int) -> int | None:
        j, rest = divmod(n, self.stride)
        return j if rest == self.stride // 2 and j < self.samples else None

    @staticmethod
    def kind(j: int) -> str:
        """Even samples are about persons never seen (a new profile); odd ones about persons created in
        Bergen before the load (an update that makes them enter the segment)."""
        return "new" if j % 2 == 0 else "update"

    def update_samples(self) -> range:
        return range(1, self.samples, 2)

    def person_of(self, n: int) -> str:
        j = self.sample_at(n)
        return f"s{j}" if j is not None else f"p{n % self.pool}"

    def last_name_of(self, person: int) -> str:
        """The first name pool person ``person`` must end with: its last message's."""
        n = person + (self.messages - 1 - person) // self.pool * self.pool
        while self.sample_at(n) is not None:
            n -= self.pool
        return f"m{n}"

    def request_of(self, j: int) -> int:
        return self.position(j) // self.per_request

    def scheduled(self, j: int, start_wall: float) -> float:
        """When sample ``j``'s request is due (bench/stream.py's paced loop: request k * connections + c
        is connection c's k-th, due at c / rate + k / rate-per-connection)."""
        k, c = divmod(self.request_of(j), self.connections)
        return start_wall + c / self.request_rate + k / (self.request_rate / self.connections)

    # --- what a message carries ---
    def email(self, person: str) -> str:
        return f"{person}.{self.tag}@example.com"

    @staticmethod
    def ecid(person: str) -> str:
        return f"{(1 if person[0] == 's' else 2) * 10**37 + int(person[1:]):038d}"

    def message_id(self, n: int) -> str:
        return f"{self.tag}-{n}"

    def message(self, n: int) -> dict[str, Any]:
        return self._envelope(self.person_of(n), self.message_id(n), f"m{n}", "Oslo")

    def message_before(self, j: int) -> dict[str, Any]:
        return self._envelope(f"s{j}", f"{self.tag}-before-{j}", BEFORE, "Bergen")

    def _envelope(self, person: str, message_id: str, name: str, city: str) -> dict[str, Any]:
        return {
            "header": {
                "schemaRef": {"id": self.schema_id, "contentType": XED},
                "imsOrgId": self.org,
                "datasetId": self.dataset_id,
                "flowId": self.flow_id,
            },
            "body": {
                "xdmMeta": {"schemaRef": {"id": self.schema_id}},
                "xdmEntity": {
                    "_id": message_id,
                    "identityMap": {
                        "Email": [{"id": self.email(person), "primary": True}],
                        "ECID": [{"id": self.ecid(person)}],
                    },
                    "person": {"name": {"firstName": name}},
                    "homeAddress": {"city": city, "countryCode": "NO"},
                },
            },
        }

    # --- looking a person up ---
    def path(self, person: str) -> str:
        email = quote(self.email(person))
        return f"{ENTITIES}?schema.name=_xdm.context.profile&entityIdNS=Email&entityId={email}"

    def lookup(self, client: httpx.Client, person: str) -> dict[str, Any] | None:
        """The person's profile (the entity of the lookup's answer), or None while it has none."""
        got = client.get(self.path(person))
        if got.status_code == 404:
            return None
        if got.status_code != 200:
            raise SystemExit(f"lookup of {person}: {got.status_code} {got.text[:300]}")
        (entity,) = got.json().values()
        return dict(entity)


@dataclass
class Sample:
    index: int
    shown: float | None = None  # wall clock: the lookup first showed the sample's first name
    realized: float | None = None  # wall clock: the lookup first showed the segment realized
    wrong: str = ""  # what the lookup showed that no message sent says


def judge(plan: Plan, sample: Sample, entity: dict[str, Any], now: float) -> None:
    """Record what one lookup of the sample's person showed."""
    person = f"s{sample.index}"
    profile = entity.get("entity", {})
    identities = profile.get("identityMap", {})
    if identities.get("Email") != [{"id": plan.email(person)}] or identities.get("ECID") != [
        {"id": plan.ecid(person)}
    ]:
        sample.wrong = f"identities {identities} are not {person}'s"
        return
    name = profile.get("person", {}).get("name", {}).get("firstName")
    if name == f"m{plan.position(sample.index)}":
        sample.shown = sample.shown or now
    elif not (name == BEFORE and plan.kind(sample.index) == "update"):
        sample.wrong = f"first name {name!r}: no message for {person} says so"
        return
    held = profile.get("segmentMembership", {}).get("ups", {}).get(plan.segment_id, {})
    if held.get("status") == "realized":
        sample.realized = sample.realized or now


def poll_samples(
    port: int, headers: dict[str, str], plan: Plan, start_wall: float, interval: float, timeout: float
) -> list[Sample]:
    """Child process: follow every sample from its scheduled send, polling its person's profile every
    ``interval`` s (or 5% of the time since its send, if longer) until it shows the sample's first name
    and the segment realized (or ``timeout`` s)."""
    return run_loop(_poll_all(port, headers, plan, start_wall, interval, timeout))


async def _poll_all(
    port: int, headers: dict[str, str], plan: Plan, start_wall: float, interval: float, timeout: float
) -> list[Sample]:
    samples = [Sample(j) for j in range(plan.samples)]
    await asyncio.gather(*(_follow(port, headers, plan, s, start_wall, interval, timeout) for s in samples))
    return samples


async def _follow(
    port: int,
    headers: dict[str, str],
    plan: Plan,
    sample: Sample,
    start_wall: float,
    interval: float,
    timeout: float,
) -> None:
    due = plan.scheduled(sample.index, start_wall)
    await asyncio.sleep(max(0.0, due - time.time()))  # pacing the polls, not synchronisation
    request = loadgen.build_request("GET", plan.path(f"s{sample.index}"), headers)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not sample.wrong and (sample.shown is None or sample.realized is None):
            began = time.time()
            if began > due + timeout:
                return
            writer.write(request)
            status, body = await loadgen._read_response(reader)
            now = time.time()
            if status == 200:
                (entity,) = orjson.loads(body).values()
                judge(plan, sample, entity, now)
            elif status != 404:
                sample.wrong = f"lookup answered {status}: {body[:200]!r}"
            # Every ``interval`` s, or 5% of the time since the send if longer: a late sample costs fewer
            # polls (a pipeline that falls behind must not be buried by its own measurement).
            wait = max(interval, (time.time() - due) / 20)
            await asyncio.sleep(max(0.0, wait - (time.time() - began)))
    finally:
        writer.close()
