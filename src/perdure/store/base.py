"""The Store interface: durable instances, history, queues and leases.

A store knows nothing of user code. It stores history events (``perdure.core.history``),
JSON payloads, and rows for instances, orchestration messages, activity tasks, leases,
dead letters, discard records and worker heartbeats. Every method states its atomicity
and fencing contract; :mod:`perdure.testing.conformance` checks them for every backend.

Time: every store reads the wall clock through its ``clock`` (a ``() -> float`` returning
UTC epoch seconds, ``time.time`` by default) so that tests can control it.

Leases (invariant 2): every lock issues a fresh random token. A token holds until the lease
is released or another caller takes it over, which it may do only once the lease has
expired; so a holder whose lease expired but was not yet taken over may still write, and
after a takeover every write with the old token fails and writes nothing.

Execution routing (invariant 4): a message names its target instance and, unless it is an
operator message (external event, terminate, suspend, resume) addressed "to whatever
execution is current" with ``execution_id=None``, the execution it belongs to.

Runs (invariant 9): every run of an instance id (a start, a start after a purge, a
``replace_terminal`` start, a child's retry under the same id) has a random run token,
``run_id``. A message, an activity task and a child's parent reference name the run they
belong to; one addressed to another run of the same id is discarded with a record
(``stale_run``), never applied. ``run_id=None`` on a message means "the run current at
delivery" (client messages sent without knowing the run).

Delivery (invariant 10): an instance's deliverable messages are handed to its turn in the
order they were enqueued (``message_id``), the execution's ``ExecutionStarted`` first;
nothing else reorders them, whichever way the turn is run (:mod:`perdure.store.common.routing`).

No user code runs while a store transaction is open: a worker runs its turns before the
:meth:`Store.run_round` that commits them, and :meth:`Store.create_and_run` calls its
``run_turns`` before its transaction opens.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import field
from enum import StrEnum
from typing import Any, Protocol

from perdure.core.failure import Failure
from perdure.core.history import ExecutionStarted, HistoryEvent, ParentRef, RunOrigin
from perdure.core.records import frozen_record
from perdure.core.status import OrchestrationStatus
from perdure.core.turn import WaitingOn

# --- rows the store returns --------------------------------------------------------------


@frozen_record
class InstanceStats:
    """Evidence the runtime records with each turn, for diagnosis."""

    turns: int = 0
    full_replays: int = 0
    replayed_events: int = 0
    last_turn_duration: float = 0.0
    last_progress_at: float | None = None


@frozen_record
class InstanceRecord:
    """One instance row. ``execution_id`` is the current execution (1, 2, ... across
    continue-as-new); ``history_event_count`` / ``history_bytes`` cover that execution;
    ``run_id`` is the run token of the run the row describes; ``version`` the orchestration
    version its current execution runs (``None`` until the first turn of a start that left
    it to the worker)."""

    instance_id: str
    name: str
    status: OrchestrationStatus
    execution_id: int
    input: Any
    output: Any
    failure: Failure | None
    custom_status: Any
    parent: ParentRef | None
    created_at: float
    last_updated_at: float
    history_event_count: int
    history_bytes: int
    waiting_on: WaitingOn
    stats: InstanceStats = field(default_factory=InstanceStats)
    run_id: str = ""
    version: int | None = 1


@frozen_record
class LockedInstance:
    """What a turn needs of a locked instance's row (:attr:`OrchestrationWorkItem.instance`):
    the whole row, with its payloads decoded, is :meth:`Store.get_instance`'s."""

    instance_id: str
    name: str
    status: OrchestrationStatus
    execution_id: int
    history_event_count: int
    parent: ParentRef | None
    custom_status: Any
    run_id: str = ""
    version: int | None = 1


@frozen_record
class QueuedMessage:
    """A message in the orchestration queue. ``message_id`` increases in enqueue order;
    ``run_id`` is the run it is addressed to (``None``: the current one)."""

    message_id: int
    instance_id: str
    execution_id: int | None
    event: HistoryEvent
    enqueued_at: float
    visible_at: float
    delivery_count: int
    #: ``event`` as stored (its JSON), when the store read it: a turn that records the event
    #: in history writes this text instead of encoding the event again.
    event_json: str | None = field(default=None, compare=False, repr=False)
    run_id: str | None = None


@frozen_record
class OrchestrationWorkItem:
    """A locked instance: its row, its visible messages for the current execution (in
    enqueue order), the part of its current execution's history the caller lacks, and the
    lease token every write must present.

    ``history`` holds events ``history_from, history_from + 1, ...`` of the current
    execution; ``history_from`` is 0 unless the caller said (``known_history``) that it
    already holds the first events of this run's execution.

    ``history_error`` is set, and ``history`` empty, when a stored event of that part of the
    history cannot be decoded (corrupt JSON, unknown kind, missing field): the message names
    the event. The instance cannot be replayed; the caller must fail it (for example with
    :func:`perdure.runtime.translate.failing_commit`). Locking never raises for one
    instance's unreadable history, so the other instances of the batch carry on.
    """

    instance: LockedInstance
    lease_token: str
    lease_expires_at: float
    messages: tuple[QueuedMessage, ...]
    history: tuple[HistoryEvent, ...]
    history_from: int
    history_error: str | None = None
    #: Activity outcomes handed to this turn by the worker that ran them (their messages
    #: are among ``messages``, with negative ids): see :attr:`TurnCommit.handed_over`.
    handed_over: tuple[ActivityCompletion, ...] = ()


@frozen_record
class ActivityWorkItem:
    """A locked activity task.

    For diagnosis, :meth:`Store.activity_tasks` also fills ``locked_at`` (when the current
    lease was taken: how long the activity has been running), ``lease_owner`` (the worker
    holding it) and ``visible_at`` (an unlocked task's due time; a locked task's lease
    expiry); they are ``None`` for a task that is not locked (``visible_at`` excepted).
    """

    task_row_id: int
    instance_id: str
    execution_id: int
    task_id: int
    name: str
    input: Any
    attempt: int
    lease_token: str
    lease_expires_at: float
    enqueued_at: float
    delivery_count: int
    locked_at: float | None = None
    lease_owner: str | None = None
    visible_at: float | None = None
    run_id: str | None = None


@frozen_record
class HistoryRecord:
    """One stored history event with its place: execution and sequence (0-based per
    execution)."""

    execution_id: int
    sequence: int
    event: HistoryEvent


@frozen_record
class DeadLetter:
    """A message that could not be delivered after the bounded number of tries, or whose
    stored event this version cannot decode (its ``event`` then an
    :class:`~perdure.core.history.UndecodableEvent`; see :class:`DeadLetterReason`)."""

    dead_letter_id: int
    instance_id: str
    execution_id: int | None
    event: HistoryEvent
    reason: str
    delivery_count: int
    enqueued_at: float
    dead_lettered_at: float
    run_id: str | None = None


@frozen_record
class DiscardRecord:
    """A message removed from a queue without being applied, with the reason
    (``perdure.core.history.DiscardReason``)."""

    discard_id: int
    instance_id: str
    execution_id: int | None
    event: HistoryEvent
    reason: str
    detail: str | None
    discarded_at: float
    run_id: str | None = None


@frozen_record
class WorkerRecord:
    """A worker's heartbeat row. ``orchestrations`` lists the orchestration versions it runs
    as ``name@version`` (:func:`perdure.core.registry.version_key`)."""

    worker_id: str
    host: str
    pid: int
    orchestrations: tuple[str, ...]
    activities: tuple[str, ...]
    started_at: float
    heartbeat_at: float
    concurrency: Mapping[str, int] = field(default_factory=dict)


@frozen_record
class QueueStats:
    """Depth and age of the queues: ``*_depth`` counts all rows, ``*_visible`` those due
    now; ``oldest_*_age`` is the age in seconds of the oldest due row (``None`` if none)."""

    orchestration_depth: int
    orchestration_visible: int
    oldest_orchestration_age: float | None
    activity_depth: int
    activity_visible: int
    activity_locked: int
    oldest_activity_age: float | None
    dead_letters: int


@frozen_record
class InstanceCount:
    """How many instances of orchestration ``name`` have ``status``
    (:meth:`Store.instance_counts`)."""

    name: str
    status: OrchestrationStatus
    count: int


@frozen_record
class InstanceSummary:
    """The light columns of an instance row, for fleet reports
    (:meth:`Store.oldest_instances`, :meth:`Store.stalled_instances`)."""

    instance_id: str
    name: str
    status: OrchestrationStatus
    created_at: float
    last_updated_at: float
    last_progress_at: float | None
    history_event_count: int
    history_bytes: int


@frozen_record
class Page:
    """A page of results and the cursor for the next page (``None`` on the last page)."""

    items: list[Any]
    next_cursor: str | None


# --- what callers hand to the store ------------------------------------------------------


@frozen_record
class NewInstance:
    """An instance to create, with its ``ExecutionStarted`` as the first message. ``run_id``
    is the new run's token (the store makes one when it is ``None``); ``version`` the
    orchestration version it runs (``None``: the latest of the worker that takes it);
    ``origin`` the run it was made from (a restart). ``replaces_run``: the id is expected to
    hold that terminal run, which the new one replaces (any other state of the id raises
    :class:`~perdure.errors.InstanceStateError`, nothing written). ``trace``: the trace
    context its ``ExecutionStarted`` carries (:attr:`~perdure.core.history.ExecutionStarted.trace`).
    ``fresh_id``: the id was made at random for this start and this is its first try, so no
    run of it exists and nothing was sent to it: a store need not look for either (a taken
    id still raises :class:`~perdure.errors.InstanceExistsError`). ``input_json``: the
    input's compact JSON (:func:`~perdure.core.payload.compact_json`), if the caller
    encoded it already (the client does, to check its size): the store writes it as is."""

    instance_id: str
    name: str
    input: Any
    parent: ParentRef | None = None
    start_at: float | None = None  # visible_at of the start message (None: now)
    run_id: str | None = None
    version: int | None = None
    origin: RunOrigin | None = None
    replaces_run: str | None = None
    trace: dict[str, str] | None = None
    fresh_id: bool = False
    input_json: str | None = field(default=None, repr=False)

    def start_event(self, run_id: str, execution_id: int, now: float) -> ExecutionStarted:
        """The ``ExecutionStarted`` of the instance's new run ``run_id``, at ``now``."""
        return _start_event(self, run_id, execution_id, now, self.origin)


@frozen_record
class Message:
    """A message to enqueue for an orchestration instance. ``execution_id=None`` means
    "the execution current at delivery" (operator messages only); ``run_id=None`` means "the
    run current at delivery"; ``visible_at=None`` means now."""

    instance_id: str
    event: HistoryEvent
    execution_id: int | None = None
    visible_at: float | None = None
    run_id: str | None = None


@frozen_record
class NewActivityTask:
    """An activity task to enqueue for ``instance_id``'s execution ``execution_id`` of run
    ``run_id``."""

    instance_id: str
    execution_id: int
    task_id: int
    name: str
    input: Any
    attempt: int = 1
    visible_at: float | None = None
    run_id: str | None = None


@frozen_record
class ChildStart:
    """A sub-orchestration to create as part of a turn, as run ``run_id``.

    If ``instance_id`` is already taken (:func:`perdure.store.common.routing.child_start_rule`):
    by this very parent task, nothing happens (a redelivered start); by a *terminal* child
    of the same parent instance (an earlier attempt of a retried child, or a child left from
    an earlier run of the parent), that instance is replaced by the new run; otherwise the
    store does not touch it and enqueues ``SubOrchestrationFailed(task_id=parent.task_id)``
    to ``parent`` in the same transaction (invariant 4). ``trace``: the trace context its
    ``ExecutionStarted`` carries."""

    instance_id: str
    name: str
    input: Any
    parent: ParentRef
    run_id: str | None = None
    version: int | None = None
    trace: dict[str, str] | None = None

    def start_event(self, run_id: str, execution_id: int, now: float) -> ExecutionStarted:
        """The ``ExecutionStarted`` of the child's new run ``run_id``, at ``now``."""
        return _start_event(self, run_id, execution_id, now, None)


def _start_event(
    start: NewInstance | ChildStart, run_id: str, execution_id: int, now: float, origin: RunOrigin | None
) -> ExecutionStarted:
    """The ``ExecutionStarted`` of a new run of what ``start`` creates."""
    return ExecutionStarted(
        timestamp=now,
        name=start.name,
        input=start.input,
        execution_id=execution_id,
        parent=start.parent,
        run_id=run_id,
        version=start.version,
        origin=origin,
        trace=start.trace,
    )


@frozen_record
class OpenChild:
    """A sub-orchestration that a rewound or reset run still awaits: ``instance_id``, started
    by the parent task ``recorded`` (as the child's row names its parent), now awaited by the
    task ``parent``. A child still that task's and not ended reports to ``parent`` from now
    on; one that completed has its result queued to ``parent``; otherwise (it failed, was
    terminated, is gone, or the id is another's) it is started again as a
    :class:`ChildStart` of ``name``, ``input`` and ``version`` would be."""

    instance_id: str
    name: str
    input: Any
    recorded: ParentRef
    parent: ParentRef
    version: int | None = None


@frozen_record
class LiveWork:
    """What a rewound or reset run awaits and takes next (:class:`Rewind`, :class:`Reset`):
    its ``status`` and ``waiting_on`` until its next turn, the ``messages`` queued to it (in
    order; timers as messages due at their time), the activity tasks scheduled for it and
    its open ``children``."""

    status: OrchestrationStatus
    waiting_on: WaitingOn = field(default_factory=WaitingOn)
    messages: Sequence[Message] = ()
    activities: Sequence[NewActivityTask] = ()
    children: Sequence[OpenChild] = ()


@frozen_record
class Rewind:
    """A failed execution made live again (:meth:`Store.rewind`): ``record`` (an
    ``ExecutionRewound``) is appended to its history, which must still hold
    ``history_event_count`` events of execution ``execution_id`` of run ``run_id``."""

    instance_id: str
    run_id: str
    execution_id: int
    history_event_count: int
    record: HistoryEvent
    work: LiveWork


@frozen_record
class Reset:
    """A new run ``run_id`` of ``instance_id`` replacing the terminal run ``replaces_run``
    (:meth:`Store.reset`), whose execution ``execution_id`` (the one after the old run's
    last) starts with ``history``, runs orchestration ``name`` at ``version`` with ``input``,
    and reports to ``parent`` (the old run's parent, if it had one)."""

    instance_id: str
    replaces_run: str
    run_id: str
    execution_id: int
    name: str
    input: Any
    history: Sequence[HistoryEvent]
    work: LiveWork
    version: int | None = 1
    parent: ParentRef | None = None


@frozen_record
class TurnStats:
    """Evidence about one turn, accumulated on the instance row."""

    duration: float = 0.0
    full_replay: bool = False
    replayed_events: int = 0
    progressed: bool = True


@frozen_record
class TurnCommit:
    """Everything one orchestration turn writes, committed atomically (invariant 1).

    ``execution_id`` is the execution the turn ran, of run ``run_id`` (the turn commits
    only if that run is still the instance's). ``new_events`` are appended to that
    execution's history. ``consumed`` are the ids of the messages the turn applied or
    discarded (they are deleted). ``discarded`` are consumed messages to record in the
    discard log with their reason. If ``continue_as_new`` is true, the store ends the
    execution, makes ``execution_id + 1`` current with fresh history and enqueues its
    ``ExecutionStarted`` (the instance's name, parent and run, input
    ``continue_as_new_input``, and ``carried``, the messages it takes first). When
    ``status`` is terminal, the instance's queued activity tasks that are not locked are
    removed with a discard record. ``release`` releases the lease after the commit;
    otherwise it is kept, and extended to ``lease_seconds`` from now if ``extend_lease``
    (a worker that keeps a lease for its next turns extends it once half of it has gone:
    the steps in between write nothing to the lease). ``version`` is the orchestration version the turn
    ran (recorded on the instance row; ``None`` leaves it), ``continue_as_new_version`` the
    one the next execution runs, ``continue_as_new_trace`` the trace context it carries.
    """

    instance_id: str
    lease_token: str
    execution_id: int
    new_events: Sequence[HistoryEvent]
    consumed: Sequence[int]
    status: OrchestrationStatus
    output: Any = None
    failure: Failure | None = None
    custom_status: Any = None
    waiting_on: WaitingOn = field(default_factory=WaitingOn)
    activities: Sequence[NewActivityTask] = ()
    messages: Sequence[Message] = ()
    children: Sequence[ChildStart] = ()
    discarded: Sequence[tuple[int, str, str | None]] = ()  # (message_id, reason, detail)
    continue_as_new: bool = False
    continue_as_new_input: Any = None
    carried: Sequence[HistoryEvent] = ()
    release: bool = True
    extend_lease: bool = True
    run_id: str | None = None
    version: int | None = None
    continue_as_new_version: int | None = None
    continue_as_new_trace: dict[str, str] | None = None
    #: Activity outcomes the turn applied that were never queued: the worker that ran them
    #: holds the instance's lease and handed them to the turn (their messages, in
    #: ``consumed``, have negative ids). The commit records them: it stands only if each
    #: task still holds its lease token (the task is then deleted) and no message is
    #: queued for the instance that the turn did not consume, which would have to come
    #: first (invariant 10); otherwise the turn is refused and the outcomes are recorded as
    #: :meth:`Store.complete_activities` records them.
    handed_over: Sequence[ActivityCompletion] = ()
    #: Whether the instance may have a parent to report to when this turn ends it: False
    #: when its work item named none. A store may then commit a turn that ends the instance
    #: without reading its row first (the write itself refuses a row that names a parent).
    may_report: bool = True
    stats: TurnStats = field(default_factory=TurnStats)
    #: ``id(event) -> JSON`` for events of ``new_events`` the caller holds encoded already
    #: (local activity completions, encoded where they ran): stores write this text instead
    #: of encoding the event again. Each must be exactly ``dumps_event`` of its event.
    event_json: Mapping[int, str] = field(default_factory=dict, compare=False, repr=False)


@frozen_record
class ActivityCompletion:
    """The outcome of a locked activity task: ``result`` or ``failure`` becomes an
    ``ActivityCompleted`` / ``ActivityFailed`` message to the task's execution.

    ``instance_id``, ``run_id`` and ``execution_id`` say whose task it was, when the caller
    knows (a worker hands a completion straight to a turn of that run: see
    :attr:`TurnCommit.handed_over`); stores read them from the task row."""

    task_row_id: int
    lease_token: str
    event: HistoryEvent
    duration: float = 0.0
    #: ``event`` as :func:`perdure.core.history.dumps_event` encodes it, when the caller has
    #: that already (the worker encodes it on the activity's thread): stores write this text
    #: instead of encoding the event again. It must be exactly that encoding of ``event``.
    event_json: str | None = field(default=None, compare=False, repr=False)
    instance_id: str | None = None
    run_id: str | None = None
    execution_id: int | None = None


#: ``Store.lock_orchestrations(known_history=...)``: instance id -> (run_id, execution_id,
#: event_count) of the history the caller holds.
KnownHistory = Mapping[str, tuple[str | None, int, int]]


@frozen_record
class RoundRequest:
    """What one worker round asks of :meth:`Store.run_round`: the turns to commit (run
    before the call, under leases the caller holds), the activity outcomes to record, how
    many instances to lock for the next turns (``orchestration_limit``; 0: none) and how
    many activity tasks to lock (``activity_limit``; 0: none), with the same filters as
    :meth:`Store.lock_orchestrations` and :meth:`Store.lock_activities`. ``held`` maps the
    instances whose leases the caller holds to their tokens: they are locked again (a
    fresh token) when they have messages, though their leases are live.
    ``running_tasks`` are the activity task rows the caller is running itself: the round
    never locks them, even once their leases have expired (the store did not answer the
    caller's renewals), so a worker never starts a second run of its own running task; the
    running one's result, written under its token, is accepted unless another worker has
    taken the task over meanwhile.
    ``due_within``: how far ahead (seconds) the caller needs :attr:`RoundResult.next_message_at`
    (a worker: its ``poll_interval``, after which it looks anyway). A message held back by a
    lease that expires later than that may then be left out of it, so that finding the
    next due message costs the same however many instances are leased (None: exact).
    ``take_scheduled``: up to this many of the tasks the round's committed turns schedule,
    due at once and of ``activity_names``, are written locked for the caller (as
    ``lock_activities`` would lock them, in the order the turns schedule them) and come
    first in :attr:`RoundResult.activities`: no statement has to find them, and nobody else
    is told of them. A store may queue some of them instead; it then signals them as any
    new task. They do not count against ``activity_limit``.
    ``due_times``: False for a caller that knows when to look at the queues again (it has
    taken note of what earlier rounds read, and of the signals since): the round reads no
    due times (:attr:`RoundResult.next_message_at` and ``next_task_at`` are then None and
    mean nothing), and signals every queue its writes put work in."""

    owner: str
    lease_seconds: float
    commits: Sequence[TurnCommit] = ()
    completions: Sequence[ActivityCompletion] = ()
    orchestration_limit: int = 0
    orchestration_names: Collection[str] | None = None
    known_history: KnownHistory | None = None
    held: Mapping[str, str] | None = None
    activity_limit: int = 0
    activity_names: Collection[str] | None = None
    running_tasks: Collection[int] = ()
    due_within: float | None = None
    take_scheduled: int = 0
    due_times: bool = True


@frozen_record
class RoundResult:
    """What :meth:`Store.run_round` did: one outcome per completion, the instances it locked,
    one outcome per turn commit, the activity tasks it locked, and when work next becomes
    takeable in each queue (as :meth:`Store.next_visible_at`, read inside the round's last
    transaction after its writes; ``None``: the queue is empty), with the store's time when
    the round looked at each queue (``messages_seen_at``: when it locked instances,
    ``tasks_seen_at``: when it locked tasks). Work due by the time the round looked, and not
    taken, is work the caller cannot take (another worker's names, no room); work due after
    it became due while the round ran."""

    completions: list[Outcome]
    locked: list[OrchestrationWorkItem]
    turns: list[Outcome]
    activities: list[ActivityWorkItem]
    next_message_at: float | None
    next_task_at: float | None
    messages_seen_at: float = 0.0
    tasks_seen_at: float = 0.0


@frozen_record
class TaskRequest:
    """The activity tasks a transaction that commits turns takes for its caller, as a
    worker round takes them with :attr:`RoundRequest.take_scheduled`: up to ``limit`` of
    the tasks its turns schedule, due at once and of ``names`` (None: any), written locked."""

    limit: int
    names: Collection[str] | None = None


@frozen_record
class EagerResult:
    """What :meth:`Store.create_and_run` did: the outcome of each turn commit (none for a
    start that is not due yet), and the activity tasks it locked for the caller."""

    turns: list[Outcome]
    activities: list[ActivityWorkItem] = field(default_factory=list)


class DeadLetterReason:
    """Why a message was dead-lettered (:attr:`DeadLetter.reason`)."""

    INSTANCE_NOT_FOUND = "instance_not_found"  # no instance with the target id ever appeared
    EXECUTION_NOT_FOUND = "execution_not_found"  # the target execution never started
    UNDECODABLE = "undecodable"  # this version cannot read the stored event (see UndecodableEvent)


class Outcome(StrEnum):
    """What happened to one write of a batch."""

    OK = "ok"
    LEASE_LOST = "lease_lost"  # the token no longer holds: nothing was written
    DISCARDED = "discarded"  # the target instance is terminal or the execution ended: recorded, not applied


@frozen_record
class InstanceQuery:
    """Filters for :meth:`Store.list_instances`; ``None`` means "any"."""

    statuses: Collection[OrchestrationStatus] | None = None
    name: str | None = None
    version: int | None = None
    created_after: float | None = None
    created_before: float | None = None
    parent_instance_id: str | None = None
    instance_id_prefix: str | None = None
    limit: int = 100
    cursor: str | None = None
    sort: str = "created"  # "created": newest first; "updated": most recently updated first


# --- the interface -----------------------------------------------------------------------


class Store(Protocol):
    """Durable state of perdure. Implementations: SQLite and PostgreSQL.

    Every method is safe to call from many threads. Methods that write are atomic: each
    either commits entirely or not at all, including under process kill at any instant.
    """

    url: str
    """The URL the store was opened with (no password)."""

    notifier: Notifier
    """In-process wake-ups; see :class:`perdure.store.notify.Notifier`."""

    fault_hook: Callable[[str], None] | None
    """Fault injection for tests: when set, every write method calls
    ``fault_hook(f"{method_name}:inside")`` inside its transaction just before committing; if
    the hook raises, the transaction rolls back and the exception propagates."""

    def close(self) -> None:
        """Release connections. Idempotent."""

    # -- client writes --

    def create_instance(self, instance: NewInstance, *, replace_terminal: bool = False) -> None:
        """Atomically insert the instance (PENDING, a new run) and its ``ExecutionStarted``
        message. If the id exists and is not terminal, raise ``InstanceExistsError``; if it is
        terminal, raise ``InstanceExistsError`` unless ``replace_terminal``: then the new
        run replaces the old one in the same transaction. The old run's history stays
        (the new run's executions are numbered after its last one), its lease goes, and the
        messages still queued for it are discarded with a ``stale_run`` record."""

    def create_instances(
        self, instances: Sequence[NewInstance], *, replace_terminal: bool = False, request_id: str | None = None
    ) -> None:
        """:meth:`create_instance` for many instances in one transaction: all are created, or
        none (``InstanceExistsError`` names the first id in the way). With ``request_id``,
        a call whose id was applied before does nothing (a retry after an unknown commit
        outcome applies once)."""

    def enqueue_messages(self, messages: Sequence[Message], *, request_id: str | None = None) -> None:
        """Atomically append messages to the orchestration queue (any target, existing or not:
        a message for an instance or execution that does not exist yet is kept and deferred at
        lock time, never dropped; invariant 3). With ``request_id``, a call whose id was
        applied before does nothing."""

    def purge_instances(self, instance_ids: Sequence[str]) -> int:
        """Delete terminal instances with their history (every run's), messages, tasks,
        lease, dead letters and discard records, atomically; and what ids without an
        instance left behind (dead letters, discard records, queued messages: a purged or
        never-created instance). Return how many ids were purged; ids of live instances, and
        ids with nothing stored, are skipped."""

    def purge_where(self, query: InstanceQuery) -> int:
        """Purge every terminal instance matching ``query`` (``limit``/``cursor`` ignored);
        a query without filters, or with an id prefix alone, also purges what ids without
        an instance left behind (:func:`perdure.store.common.routing.purges_orphans`)."""

    def rewind(self, rewinds: Sequence[Rewind], *, request_id: str | None = None) -> None:
        """Make failed executions live again, in one transaction, in the given order (a
        child before its parent). Each applies only if its instance is still FAILED, on the
        rewind's run and execution, with the history the plan was made from; otherwise
        :class:`~perdure.errors.InstanceStateError` and nothing is written. For each: the
        messages still queued for the instance are discarded with a record, as are its
        activity tasks (a running one's outcome is then refused); ``record`` is appended;
        the instance takes the ``work``'s status and what it awaits (output and failure
        cleared); the work is queued (:class:`LiveWork`). With ``request_id``, a call whose
        id was applied before does nothing."""

    def reset(self, reset: Reset, *, request_id: str | None = None) -> None:
        """Replace the terminal run ``reset.replaces_run`` of the id with the new run of
        ``reset`` (:class:`Reset`), in one transaction: the old run is retired as a
        ``replace_terminal`` start retires it (its history stays readable); the new run's
        history is written and its work queued. :class:`~perdure.errors.InstanceStateError`
        (nothing written) if the id no longer holds that run, or it is not terminal. With
        ``request_id``, a call whose id was applied before does nothing."""

    # -- orchestration work --

    def lock_orchestrations(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        names: Collection[str] | None = None,
        known_history: KnownHistory | None = None,
        instance_ids: Collection[str] | None = None,
        held: Mapping[str, str] | None = None,
    ) -> list[OrchestrationWorkItem]:
        """Lock up to ``limit`` instances that have visible messages and no live lease (or a
        lease the caller holds: ``held`` maps instance ids to the caller's tokens), oldest
        visible message first, returning each with a new lease (owner + fresh token + expiry).

        Only one holder per instance at any moment; an expired lease is taken over. Filters:
        ``names``, the routing keys of the orchestration versions the caller runs
        (:func:`perdure.core.registry.version_key`: ``name@version``, and ``name@*`` for
        instances whose version is not chosen yet; an instance of another name or version
        is never locked, whatever brought its messages), specific ``instance_ids``. ``known_history`` maps an instance
        id to ``(run_id, execution_id, event_count)`` the caller already holds; if it matches
        the current run and execution, only later events are returned.

        Messages are sorted by target before being handed out
        (:func:`perdure.store.common.routing.route_messages`, invariants 3, 4, 9):
        - addressed to another run of the id: deleted with a ``stale_run`` discard record;
        - ``execution_id`` None or the current execution: returned;
        - an earlier execution: deleted with a ``stale_execution`` discard record;
        - a later execution, or an instance that does not exist: kept, ``delivery_count``
          incremented and ``visible_at`` pushed back with exponential backoff; after
          ``max_deliveries`` tries moved to the dead-letter table;
        - instance terminal: deleted with a ``terminal_instance`` discard record.
        An instance whose visible messages were all sorted away is not returned.
        Delivered messages come in enqueue order, the execution's ``ExecutionStarted`` first
        while its history is empty; nothing else reorders them (invariants 5, 10).

        A current-execution history that cannot be decoded does not make this method raise:
        the instance is locked and returned with ``history_error`` set (see
        :class:`OrchestrationWorkItem`), so the caller can fail that instance alone.
        """

    def commit_turns(self, commits: Sequence[TurnCommit]) -> list[Outcome]:
        """Commit several turns in one transaction (group commit); one outcome per commit.

        Each commit is all-or-nothing (invariant 1) and conditional on its lease token still
        holding, the instance not being terminal before the turn and still being on the
        commit's run and execution (invariants 2, 5, 9); otherwise its outcome is
        ``LEASE_LOST`` and nothing of it is written, while the other commits of the batch
        proceed. A commit whose ``consumed`` messages are no longer all queued (an earlier
        commit already applied them) is ``LEASE_LOST`` as well.
        """

    def abandon_orchestration(self, instance_id: str, lease_token: str, *, retry_after: float = 0.0) -> None:
        """Release the lease without committing; the instance is handed out again after
        ``retry_after`` seconds, with its messages (those queued and those enqueued meanwhile)
        in enqueue order (invariant 5). Raises ``LeaseLost`` if the token no longer holds."""

    def renew_orchestration_lease(self, instance_id: str, lease_token: str, lease_seconds: float) -> float:
        """Extend a held lease; return the new expiry. Raises ``LeaseLost``."""

    # -- activity work --

    def lock_activities(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        names: Collection[str] | None = None,
        task_row_ids: Collection[int] | None = None,
    ) -> list[ActivityWorkItem]:
        """Lock up to ``limit`` visible activity tasks with no live lease (oldest first),
        each with a fresh token; an expired lease is taken over (``delivery_count`` grows)."""

    def complete_activities(self, completions: Sequence[ActivityCompletion]) -> list[Outcome]:
        """For each completion, atomically enqueue its event to the task's instance and
        execution and delete the task, conditional on the task's lease token
        (``LEASE_LOST`` otherwise, nothing written). If the instance is terminal or the
        execution has ended, the task is deleted and the event recorded as discarded
        (``DISCARDED``). One transaction for the batch."""

    # -- a worker round --

    def run_round(self, request: RoundRequest) -> RoundResult:
        """A worker's round in one transaction (:mod:`perdure.store.common.rounds`). The
        caller runs the orchestration code before it, never inside it (invariant 10):

        1. ``commit_turns(request.commits)``: the turns the caller ran on instances it
           locked in an earlier round (or holds, with outcomes handed over:
           :attr:`TurnCommit.handed_over`), each fenced by its lease;
        2. ``complete_activities`` of the completions no committed turn applied (queued as
           messages to their task's run and execution, or discarded with a record);
        3. ``lock_orchestrations`` (up to ``orchestration_limit``; ``held`` leases included),
           which sees the messages just enqueued: the instances for the caller's next turns;
        4. ``lock_activities`` (up to ``activity_limit``), which sees the tasks just enqueued
           by step 1, and passes over the caller's ``running_tasks`` (tasks step 1 wrote
           locked for the caller, ``take_scheduled``, come before them).

        Each step has its own method's contract (fencing, routing, discard records, payload
        encoding); together they commit atomically or not at all. The transaction is
        durable when it commits turns; one that only records outcomes and takes leases may
        commit without waiting for the disk (a crash of the machine then loses at most
        those, and the activities run again: at-least-once).

        Notifications: a queue's topic is signalled after the commit only if the round
        leaves work due in it now (work the round created and took itself wakes nobody);
        with ``due_times`` False, if the round's writes put work in it.
        """

    def create_and_run(
        self,
        instance: NewInstance,
        *,
        owner: str,
        lease_seconds: float,
        run_turns: Callable[[list[OrchestrationWorkItem]], Sequence[TurnCommit]],
        replace_terminal: bool = False,
        request_id: str | None = None,
        tasks: TaskRequest | None = None,
    ) -> EagerResult:
        """An eager start: a new instance and its first turn in one transaction (one commit),
        the turn run before that transaction opens (invariant 10). ``request_id`` is
        recorded as by :meth:`create_instances`. With ``tasks``, the turn's tasks are written
        locked for ``owner`` as a round's ``take_scheduled`` writes them, with
        ``lease_seconds``: they run without a round of their own to take them.

        1. The checks of ``create_instance(instance, replace_terminal=...)`` are made first:
           an ``InstanceExistsError`` is raised before anything runs.
        2. ``commits = run_turns([item])``, with no transaction open, on a work item for the
           new run (:func:`perdure.store.common.rounds.eager_item`): its ``ExecutionStarted``
           handed over without a row (``message_id`` -1).
        3. One transaction creates the instance (``InstanceExistsError`` if the id was
           taken meanwhile: nothing is written) and commits the turn. Messages that were
           queued for the id before it existed are left queued, after the start: the next
           turn takes them.

        Returns the outcomes of step 3 and the tasks locked; no outcome, and an ordinary
        :meth:`create_instance`, when ``instance.start_at`` is in the future.
        """

    def renew_activity_leases(self, leases: Sequence[tuple[int, str]], lease_seconds: float) -> list[bool]:
        """Extend the leases ``(task_row_id, token)``; False for each that no longer holds."""

    def abandon_activity(self, task_row_id: int, lease_token: str, *, retry_after: float = 0.0) -> None:
        """Release a task's lease so it runs again after ``retry_after``. Raises ``LeaseLost``."""

    # -- workers --

    def heartbeat(self, worker: WorkerRecord) -> None:
        """Insert or refresh the worker's row (``heartbeat_at`` set to now)."""

    def remove_worker(self, worker_id: str) -> None:
        """Delete the worker's row (graceful stop)."""

    def sweep(self, *, workers_before: float, requests_before: float) -> None:
        """Retention: delete the rows of workers whose last heartbeat is older than
        ``workers_before`` (they crashed), and the request ids of client operations
        recorded before ``requests_before``."""

    def list_workers(self, *, alive_within: float | None = None) -> list[WorkerRecord]:
        """Worker rows, only those with a heartbeat in the last ``alive_within`` seconds if
        given."""

    # -- reads --

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance row, or None."""

    def watch_instance(self, instance_id: str) -> InstanceRecord | None:
        """:meth:`get_instance`, for a wait that relies on other processes' signals of the
        instance's end: a store that signals instance ends to other processes (PostgreSQL's
        ``NOTIFY``) signals this one's from now on, and the row read reflects every
        transaction that ended the instance before the mark took hold. A store that signals
        them to no other process (SQLite) reads the row."""

    def get_history(
        self,
        instance_id: str,
        *,
        execution_id: int | None = None,
        after_sequence: int = -1,
        limit: int | None = None,
    ) -> list[HistoryRecord]:
        """History of one execution (the current one by default), in order, from
        ``after_sequence + 1``, at most ``limit`` events."""

    def list_instances(self, query: InstanceQuery) -> Page:
        """Instances matching ``query``, newest first (by creation, or by last update with
        ``sort="updated"``), one page of ``InstanceRecord``."""

    def pending_messages(self, instance_id: str) -> list[QueuedMessage]:
        """Messages queued for the instance, in enqueue order (for diagnosis)."""

    def activity_tasks(self, instance_id: str) -> list[ActivityWorkItem]:
        """Activity tasks queued or running for the instance (lease fields empty when not
        locked)."""

    def queue_stats(self) -> QueueStats:
        """Depth and age of the queues."""

    def dead_letters(self, *, instance_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead-lettered messages, newest first."""

    def discarded_messages(self, *, instance_id: str | None = None, limit: int = 100) -> list[DiscardRecord]:
        """Discard records, newest first."""

    def next_visible_at(self, *, queue: str | None = None) -> float | None:
        """The earliest time work becomes takeable, so an idle worker knows how long it may
        sleep: the earliest ``visible_at`` among unlocked messages and tasks, or the lease
        expiry of locked ones. ``queue`` narrows it to ``"orchestrations"`` (messages) or
        ``"activities"`` (tasks). Read-only."""

    # -- fleet reads (diagnosis) --

    def instance_counts(self) -> list[InstanceCount]:
        """How many instances there are per orchestration name and status (statuses with no
        instance are left out), sorted by name then status. Read-only; one aggregate query."""

    def oldest_instances(
        self,
        *,
        statuses: Collection[OrchestrationStatus],
        offset: int = 0,
        limit: int = 10,
    ) -> list[InstanceSummary]:
        """Instances with one of ``statuses``, oldest first (``created_at``, then
        ``instance_id``), skipping the first ``offset``, at most ``limit``. With the count from
        :meth:`instance_counts`, ``offset`` reads the age at any rank (percentiles) through the
        (status, created_at) index, without reading every row."""

    def stalled_instances(self, *, progress_before: float, limit: int = 100) -> tuple[int, list[InstanceSummary]]:
        """Non-terminal instances (PENDING, RUNNING, SUSPENDED) whose last progress
        (``last_progress_at``, or ``created_at`` if they never progressed) is earlier than
        ``progress_before``: how many there are, and the ``limit`` stalest of them, stalest
        first (ties by ``instance_id``)."""

    def queue_depths(self) -> list[QueueDepth]:
        """The queues per name: orchestration messages by their target instance's
        orchestration name (``None`` for messages to an instance that does not exist), and
        activity tasks by activity name; only names with queued rows, sorted by kind then
        name. Read-only; one aggregate query over the queue tables."""


from perdure.store.notify import Notifier  # noqa: E402  (re-exported for the annotation)


@frozen_record
class QueueDepth:
    """One queue of :meth:`Store.queue_depths`: ``kind`` is ``"orchestration"`` (messages)
    or ``"activity"`` (tasks), ``name`` the orchestration or activity name. ``depth`` counts
    all its rows, ``visible`` those due now (a running task's row is due again when its lease
    expires), and ``oldest_visible_age`` is how long, in seconds, the oldest due row has been
    due (``None`` when none is)."""

    kind: str
    name: str | None
    depth: int
    visible: int
    oldest_visible_age: float | None
