"""``diagnose(store, instance_id)``: the playbook's decision flow for one instance.

Terminal instances get their terminal finding and its cause; live ones get the findings of
:mod:`perdure.diagnosis.live`, children diagnosed recursively (bounded depth, no cycles).
Dead letters and discarded operator messages are reported either way.
"""

from __future__ import annotations

import time

from perdure.diagnosis.evidence import Environment, HistoryIndex, InstanceEvidence
from perdure.diagnosis.letters import dead_letter_findings
from perdure.diagnosis.live import LiveRules
from perdure.diagnosis.model import Diagnosis, Thresholds, rank_findings
from perdure.diagnosis.terminal import terminal_findings
from perdure.store.base import Store


class Diagnoser:
    """Diagnoses instances of one store at one moment; store-wide evidence (workers, queue
    statistics) is read once and shared by every instance it examines."""

    def __init__(self, store: Store, thresholds: Thresholds | None = None, *, now: float | None = None) -> None:
        self.store = store
        self.thresholds = thresholds or Thresholds()
        clock = getattr(store, "clock", time.time) if now is None else (lambda: now)
        self.env = Environment(store, clock, self.thresholds.worker_timeout)

    @property
    def now(self) -> float:
        """The moment every age and duration is measured from."""
        return self.env.now

    def diagnose(self, instance_id: str) -> Diagnosis:
        """The diagnosis of ``instance_id``; :class:`~perdure.errors.InstanceNotFoundError`
        if there is none."""
        return self._diagnose(instance_id, (instance_id,))

    def _diagnose(self, instance_id: str, path: tuple[str, ...]) -> Diagnosis:
        ev = InstanceEvidence.read(self.store, instance_id)
        index = HistoryIndex.build(ev.history)
        if ev.record.status.is_terminal:
            findings = terminal_findings(ev, index) + dead_letter_findings(ev)
        else:

            def child(cid: str) -> Diagnosis | None:
                if cid in path or len(path) > self.thresholds.child_depth:
                    return None
                return self._diagnose(cid, (*path, cid))

            findings = LiveRules(ev, index, self.env, self.thresholds, child).run()
        return Diagnosis(
            instance_id=ev.record.instance_id,
            name=ev.record.name,
            status=ev.record.status.value,
            findings=rank_findings(findings, terminal=ev.record.status.is_terminal),
            generated_at=self.now,
        )


def diagnose(
    store: Store,
    instance_id: str,
    *,
    thresholds: Thresholds | None = None,
    now: float | None = None,
) -> Diagnosis:
    """Why ``instance_id`` is (not) finishing, from the store's evidence: ranked findings,
    the verdict first. Read-only. Raises :class:`~perdure.errors.InstanceNotFoundError`
    for an unknown id."""
    return Diagnoser(store, thresholds, now=now).diagnose(instance_id)
