"""The store: one Database and the query groups services use (leads, queue, workers...)."""

from __future__ import annotations

from engine.store.db import Database
from engine.store.handoffs import HandoffStore
from engine.store.inbound import CursorTable, InboundStore
from engine.store.leads import LeadStore
from engine.store.mailboxes import MailboxStore
from engine.store.queue import QueueStore
from engine.store.reports import ReportStore
from engine.store.stats import StatsStore
from engine.store.workers import WorkerStore


class Store:
    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.leads = LeadStore(self.db)
        self.queue = QueueStore(self.db)
        self.workers = WorkerStore(self.db)
        self.mailboxes = MailboxStore(self.db)
        self.reports = ReportStore(self.db)
        self.stats = StatsStore(self.db)
        self.inbound = InboundStore(self.db)  # the reply watcher's transaction
        self.handoffs = HandoffStore(self.db)
        self.cursors = CursorTable(self.db)  # where each mailbox watcher resumes

    def close(self) -> None:
        self.db.dispose()
