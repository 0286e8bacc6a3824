"""A real single-node Slurm on loopback, started from Debian's packages inside the tests.

Facts and pitfalls: shared/reference/cluster.md. Everything lives in a fresh folder (job ids restart at 1):
slurm.conf, state, spool, logs, pid files. Authentication is auth/none + cred/none (no munge daemon to
manage); ``cred_expire=10`` makes a requeued job restart after ~10 s instead of 120 s. The ports are picked
free, so two test sessions on one machine do not meet. Every client call runs under ``timeout``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "squeue", "sinfo", "scancel")


def missing_programs() -> list[str]:
    return [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p) is None]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_memory_mb() -> int:
    out = subprocess.run(["timeout", "20", "slurmd", "-C"], capture_output=True, text=True).stdout
    found = re.search(r"RealMemory=(\d+)", out)
    return int(found.group(1)) if found else 1000


CONF = """\
ClusterName=cspinetest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
MinJobAge=300
KillWait=30
ReturnToService=2
SchedulerParameters=sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Slurm:
    """A running single-node cluster: ``env`` finds it (SLURM_CONF); ``client`` runs a client command."""

    root: Path
    cpus: int = 2
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60.0) -> "Slurm":
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONF.format(root=self.root, ctld_port=_free_port(), slurmd_port=_free_port(),
                                         cpus=self.cpus, memory=_node_memory_mb()))
        self.procs["slurmctld"] = subprocess.Popen(
            ["slurmctld", "-D", "-i", "-f", str(self.conf)], env=self.env, stdin=subprocess.DEVNULL,
            stdout=open(self.root / "slurmctld.out", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        # The machine's hostname is not "localhost": tell slurmd which node it is.
        self.procs["slurmd"] = subprocess.Popen(
            ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)], env=self.env, stdin=subprocess.DEVNULL,
            stdout=open(self.root / "slurmd.out", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}: {self.logs()}")
            out = self.client("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=10).stdout.strip()
            if out.startswith("idle"):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node never became idle (sinfo: {out!r}): {self.logs()}")
            time.sleep(0.3)

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def client(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client command under `timeout` (a broken daemon makes clients retry for minutes)."""
        result = subprocess.run(["timeout", str(int(timeout)), *args], env=self.env, capture_output=True,
                                text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def sbatch(self, script: Path, *extra: str) -> int:
        out = self.client("sbatch", "--parsable", *extra, str(script)).stdout.strip()
        return int(out.split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, Reason, ...); {} once it is gone."""
        out = self.client("scontrol", "show", "job", "-o", str(job_id), check=False).stdout
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def wait_job(self, job_id: int, predicate, timeout: float, what: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if predicate(info):
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for Slurm job {job_id} to {what}; last: "
                                     f"{info.get('JobState')} restarts={info.get('Restarts')} "
                                     f"reason={info.get('Reason')}\n{self.logs(1500)}")
            time.sleep(0.3)

    def queue(self) -> list[str]:
        out = self.client("squeue", "-h", "-o", "%i %T", check=False).stdout
        return [line for line in out.splitlines() if line.strip()]

    def cancel_all(self, timeout: float = 60.0) -> None:
        """scancel everything and wait for an empty queue (job steps are not children of slurmd)."""
        self.client("scancel", "--full", "-u", "root", check=False)
        deadline = time.monotonic() + timeout
        while self.queue() and time.monotonic() < deadline:
            time.sleep(0.3)

    def stop(self) -> None:
        try:
            self.cancel_all()
        finally:
            for name in reversed(DAEMONS):
                proc = self.procs.get(name)
                if proc is None or proc.poll() is not None:
                    continue
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
