"""Loaders for the public Loghub samples shipped in ``eval/loghub/data`` (provenance in eval/loghub/README.md).

- ``<System>.tsv``: ``EventId<TAB>Content`` per line, rows of Loghub's ``<System>/<System>_2k.log_structured.csv``
  in log order (the message and its ground-truth event id, nothing else; which rows: eval/loghub/README.md).
- ``hdfs_*.txt``: real HDFS_v1 block sessions as event-id sequences (one session per line, ids as in Loghub's
  ``HDFS/HDFS_templates.csv``), normal ones for training, disjoint normal and anomalous ones for testing.

The split is fixed up front and never tuned on: :data:`TUNING_SYSTEMS` (the first 8 systems in alphabetical
order) may be looked at while improving the miner; :data:`HELD_OUT_SYSTEMS` are reported, not tuned on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

SYSTEMS: tuple[str, ...] = (
    "Android",
    "Apache",
    "BGL",
    "Hadoop",
    "HDFS",
    "HealthApp",
    "HPC",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Windows",
    "Zookeeper",
)
TUNING_SYSTEMS: tuple[str, ...] = SYSTEMS[:8]
HELD_OUT_SYSTEMS: tuple[str, ...] = SYSTEMS[8:]

# Loghub's HDFS event templates (HDFS/HDFS_templates.csv), E1..E30: the session files hold these ids.
HDFS_TEMPLATES: dict[int, str] = {
    1: "<*> Adding an already existing block <*>",
    2: "<*> Verification succeeded for <*>",
    3: "<*> Served block <*> to <*>",
    4: "<*> Got exception while serving <*> to <*>",
    5: "<*> Receiving block <*> src: <*> dest: <*>",
    6: "<*> Received block <*> src: <*> dest: <*> of size <*>",
    7: "<*> writeBlock <*> received exception <*>",
    8: "<*> PacketResponder <*> for block <*> Interrupted <*>",
    9: "<*> Received block <*> of size <*> from <*>",
    10: "<*> PacketResponder <*> Exception <*>",
    11: "<*> PacketResponder <*> for block <*> terminating <*>",
    12: "<*> :Exception writing block <*> to mirror <*>",
    13: "<*> Receiving empty packet for block <*>",
    14: "<*> Exception in receiveBlock for block <*>",
    15: "<*> Changing block file offset of block <*> from <*> to <*> meta file offset to <*>",
    16: "<*> :Transmitted block <*> to <*>",
    17: "<*> :Failed to transfer <*> to <*> got <*>",
    18: "<*> Starting thread to transfer block <*> to <*>",
    19: "<*> Reopen Block <*>",
    20: "<*> Unexpected error trying to delete block <*> BlockInfo not found in volumeMap <*>",
    21: "<*> Deleting block <*> file <*>",
    22: "<*> BLOCK* NameSystem <*> allocateBlock: <*>",
    23: "<*> BLOCK* NameSystem <*> delete: <*> is added to invalidSet of <*>",
    24: "<*> BLOCK* Removing block <*> from neededReplications as it does not belong to any file <*>",
    25: "<*> BLOCK* ask <*> to replicate <*> to <*>",
    26: "<*> BLOCK* NameSystem <*> addStoredBlock: blockMap updated: <*> is added to <*> size <*>",
    27: "<*> BLOCK* NameSystem <*> addStoredBlock: Redundant addStoredBlock request received for <*> on <*> size <*>",
    28: (
        "<*> BLOCK* NameSystem <*> addStoredBlock: addStoredBlock request received for <*> on <*> size <*> "
        "But it does not belong to any file."
    ),
    29: "<*> PendingReplicationMonitor timed out block <*>",
    30: "<*> BLOCK* ask <*> to delete <*>",
}


@dataclass(frozen=True)
class LabelledMessage:
    event_id: str
    content: str


def load_system(name: str) -> list[LabelledMessage]:
    """The shipped sample of one Loghub system, in log order."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown Loghub system {name!r}; known: {', '.join(SYSTEMS)}")
    out = []
    with (DATA / f"{name}.tsv").open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line:
                continue
            event_id, sep, content = line.partition("\t")
            if not sep:
                raise ValueError(f"{name}.tsv line {number}: expected EventId<TAB>Content")
            out.append(LabelledMessage(event_id, content))
    return out


@dataclass(frozen=True)
class HdfsSessions:
    """Real HDFS block sessions as event-template sequences: ``train`` (normal only), ``test`` with labels."""

    train: list[list[str]]
    test: list[list[str]]
    test_anomalous: list[bool]


def _read_sequences(name: str) -> list[list[str]]:
    out = []
    with (DATA / name).open(encoding="utf-8") as f:
        for line in f:
            ids = [int(tok) for tok in line.split()]
            if ids:
                out.append([HDFS_TEMPLATES[i] for i in ids])
    return out


def load_hdfs_sessions() -> HdfsSessions:
    normal_test = _read_sequences("hdfs_test_normal.txt")
    anomalous_test = _read_sequences("hdfs_test_abnormal.txt")
    return HdfsSessions(
        train=_read_sequences("hdfs_train_normal.txt"),
        test=normal_test + anomalous_test,
        test_anomalous=[False] * len(normal_test) + [True] * len(anomalous_test),
    )
