"""Two `nurture run` daemons as containers with one hostname: each runs as pid 1 in a pid
namespace of its own (unshare), on one PostgreSQL database. Neither may take the other for
dead (same host, same pid), so no claim is released, nothing is held in doubt, and every
touch is sent once."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require
from tests.servers.nurture_proc import Project, _cmd
from tests.servers.polling import wait_until
from tests.servers.smtp_sink import SinkProcess

LEADS = 200
WORKERS = ("replica-a", "replica-b")

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _unshare() -> list[str]:
    """The unshare command that gives a process pid 1 in a new pid namespace, or []."""
    if shutil.which("unshare") is None:
        return []
    for extra in ([], ["--user", "--map-root-user"]):  # root, or an unprivileged user
        cmd = ["unshare", *extra, "--pid", "--fork", "--mount-proc"]
        done = subprocess.run([*cmd, "sh", "-c", "echo $$"], capture_output=True, text=True,
                              check=False)
        if done.returncode == 0 and done.stdout.strip() == "1":
            return cmd
    return []


class Container:
    """`nurture run` as pid 1 of its own pid namespace (the unshare process waits for it)."""

    def __init__(self, project: Project, unshare: list[str], worker: str) -> None:
        self.log = project.root / f"{worker}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*unshare, *_cmd("run")], cwd=project.root,
                                         env=project.env(worker), stdout=out,
                                         stderr=subprocess.STDOUT)

    def _inner(self) -> int:
        """The daemon's pid as seen from outside its namespace (unshare's only child)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        wait_until(lambda: children.read_text().strip() != "", 30, "the daemon process")
        return int(children.read_text().split()[0])

    def terminate(self) -> int:
        """SIGTERM to the daemon itself; its exit code (unshare passes it on)."""
        if self.proc.poll() is None:
            subprocess.run(["kill", "-TERM", str(self._inner())], check=False)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            raise

    def says(self, event: str) -> bool:
        return f'"{event}"' in self.log.read_text(errors="replace")


def _held_by(project: Project, worker: str) -> int:
    [(n,)] = project.query("SELECT count(*) FROM touch WHERE claimed_by = :w AND state IN "
                           "('claimed', 'sending')", w=worker)
    return int(n)


def test_replicas_sharing_a_hostname_and_pid_never_reap_each_other(
    tmp_path: Path, pg_url: str
) -> None:
    """Replica B starts (as pid 1, on the same host) while replica A (pid 1 too) holds
    claims and sends over a slow relay: B's reaper, which runs at once and every heartbeat,
    must not take A for dead. No claim released, nothing in doubt, each Message-ID once at
    the relay, both sent a share, both exit 0."""
    unshare = _unshare()
    require(bool(unshare), "unshare --pid (a new pid namespace per daemon)")
    with SinkProcess(tmp_path / "sink.jsonl", faults="slow=0.1") as sink:
        project = Project(tmp_path, pg_url, sink.port, steps=1, heartbeat=1, batch_size=50)
        project.nurture("db", "upgrade")
        project.import_leads(f"lead{i}@example.com" for i in range(LEADS))
        daemons = [Container(project, unshare, WORKERS[0])]
        try:
            wait_until(lambda: _held_by(project, WORKERS[0]) > 0 and len(sink.messages()) > 0,
                       60, "replica A sending, with claims held")
            daemons.append(Container(project, unshare, WORKERS[1]))
            wait_until(lambda: project.query("SELECT DISTINCT pid FROM worker") == [(1,)]
                       and len(project.query("SELECT name FROM worker")) == 2, 60,
                       "both daemons registered as pid 1")
            wait_until(lambda: project.query(  # every touch settled, whichever way
                "SELECT count(*) FROM touch WHERE state NOT IN ('claimed', 'sending')"
            ) == [(LEADS,)], 120, f"{LEADS} settled touches", every=0.2)
        finally:
            codes = [d.terminate() for d in daemons]
        received = Counter(m["message_id"] for m in sink.messages())
    touches = project.touches()
    assert codes == [0, 0]
    assert {t.state for t in touches} == {"sent"} and len(touches) == LEADS
    assert received == Counter({t.message_id: 1 for t in touches})
    assert set(Counter(t.claimed_by for t in touches)) == set(WORKERS)  # both really sent
    for d in daemons:
        assert not d.says("claims_released") and not d.says("touch_claim_lost")
    assert project.query("SELECT count(*) FROM event WHERE kind = 'touch_in_doubt'") == [(0,)]
