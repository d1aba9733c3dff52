# ruff: noqa: E501  (log line templates are long by nature)
"""A labelled, reproducible HDFS-like block-session corpus for session anomaly detection (generated).

The real HDFS_v1 data set (Loghub; 575k block sessions, 2.9% anomalous) cannot be downloaded here, so this
module *generates* sessions with the same shape: every session is the life of one block
(``allocateBlock`` -> per replica ``Receiving block`` / ``Received block of size`` / ``PacketResponder ...
terminating`` / ``addStoredBlock``, optional ``Verification succeeded``, optional deletion), with natural
variability (replication 1-3, random interleaving of the replicas' pipelines, optional verification and
deletion) and rare-but-normal paths (re-replication of an under-replicated block, a block served twice from
the block scanner). Anomalies (about 3%) are of the kinds seen in HDFS_v1: exceptions in the write pipeline,
missing steps (a replica never terminates or is never stored), wrong counts (an extra ``Received block``),
unusual orderings (a block stored before it was received, deleted before it was allocated) and
redundant/unexpected NameNode requests.

``python -m eval.sessioncorpus`` prints precision/recall/F1 of :class:`vigil.analysis.sessions.SessionModel`
and of an Isolation Forest baseline (scikit-learn, on count vectors) trained on the same (1% contaminated)
training set, in the same process.

Caveat: a generated corpus is easier than real HDFS: the templates are clean, the normal paths are a finite
set we wrote, and the labels are exact. Treat its scores as a regression guard, not as an HDFS result.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

_EXCEPTIONS = [
    "writeBlock {blk} received exception java.io.IOException: Could not read from stream",
    "PacketResponder {blk} 1 Exception java.io.IOException: Broken pipe",
    "Exception in receiveBlock for block {blk} java.io.IOException: Connection reset by peer",
    "{ip}:50010:DataXceiver: java.io.IOException: Block {blk} is valid, and cannot be written to.",
    "{ip}:50010:Got exception while serving {blk} to /{ip}: java.net.SocketTimeoutException: 480000 millis timeout while waiting for channel to be ready for write.",
    "writeBlock {blk} received exception java.io.EOFException",
    "PacketResponder 0 for block {blk} Interrupted.",
    "Exception in receiveBlock for block {blk} java.io.InterruptedIOException: Interruped while waiting for IO on channel",
]
_NAMENODE_ODD = [
    "BLOCK* NameSystem.addStoredBlock: Redundant addStoredBlock request received for {blk} on {ip}:50010 size {size}",
    "Unexpected error trying to delete block {blk}. BlockInfo not found in volumeMap.",
    "BLOCK* NameSystem.addStoredBlock: addStoredBlock request received for {blk} on {ip}:50010 size {size} But it does not belong to any file.",
    "PendingReplicationMonitor timed out block {blk}",
]
ANOMALY_KINDS = ("exception", "missing-step", "wrong-count", "ordering", "namenode")


@dataclass(frozen=True)
class Session:
    id: str
    events: list[str]
    anomalous: bool
    kind: str  # "normal", "rare-normal" or one of ANOMALY_KINDS


def _ip(rng: random.Random) -> str:
    return f"10.25{rng.randint(0, 1)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


class _Block:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.blk = f"blk_{rng.choice(['', '-'])}{rng.randint(10**17, 10**19 - 1)}"
        self.size = rng.choice([67108864, rng.randint(1000, 67108864)])
        self.path = f"/user/root/rand{rng.randint(1, 9)}/_temporary/_task_200811092030_{rng.randint(1, 9999):04d}_m_{rng.randint(0, 9999):06d}_0/part-{rng.randint(0, 9999):05d}"

    def fill(self, text: str) -> str:
        return text.format(blk=self.blk, ip=_ip(self.rng), size=self.size)

    def allocate(self) -> str:
        return f"BLOCK* NameSystem.allocateBlock: {self.path}. {self.blk}"

    def replica(self, index: int) -> list[str]:
        rng = self.rng
        src, dest = _ip(rng), _ip(rng)
        return [
            f"Receiving block {self.blk} src: /{src}:{rng.randint(30000, 60000)} dest: /{dest}:50010",
            f"Received block {self.blk} of size {self.size} from /{src}",
            f"PacketResponder {index} for block {self.blk} terminating",
        ]

    def stored(self) -> str:
        return f"BLOCK* NameSystem.addStoredBlock: blockMap updated: {_ip(self.rng)}:50010 is added to {self.blk} size {self.size}"

    def verified(self) -> str:
        return f"Verification succeeded for {self.blk}"

    def deletion(self, replicas: int) -> list[str]:
        rng = self.rng
        out = [
            f"BLOCK* NameSystem.delete: {self.blk} is added to invalidSet of {_ip(rng)}:50010" for _ in range(replicas)
        ]
        out += [
            f"Deleting block {self.blk} file /mnt/hadoop/dfs/data/current/subdir{rng.randint(0, 63)}/{self.blk}"
            for _ in range(replicas)
        ]
        return out

    def rereplication(self) -> list[str]:
        rng = self.rng
        target = _ip(rng)
        return [
            f"BLOCK* ask {_ip(rng)}:50010 to replicate {self.blk} to datanode(s) {target}:50010",
            f"{_ip(rng)}:50010 Starting thread to transfer block {self.blk} to {target}:50010",
            f"Receiving block {self.blk} src: /{_ip(rng)}:{rng.randint(30000, 60000)} dest: /{target}:50010",
            f"Received block {self.blk} src: /{_ip(rng)}:{rng.randint(30000, 60000)} dest: /{target}:50010 of size {self.size}",
            f"{_ip(rng)}:50010:Transmitted block {self.blk} to /{target}:50010",
            self.stored(),
        ]


def _interleave(rng: random.Random, chains: Sequence[list[str]]) -> list[str]:
    """A random merge of the chains, each chain keeping its own order."""
    pending = [list(c) for c in chains if c]
    out: list[str] = []
    while pending:
        chain = rng.choice(pending)
        out.append(chain.pop(0))
        if not chain:
            pending.remove(chain)
    return out


def _normal(rng: random.Random, *, rare: bool) -> list[str]:
    b = _Block(rng)
    replicas = rng.choices([1, 2, 3], weights=[1, 3, 12])[0]
    chains = []
    for i in range(replicas):
        chain = b.replica(replicas - 1 - i)
        chain.insert(2, b.stored()) if rng.random() < 0.5 else chain.append(b.stored())
        chains.append(chain)
    events = [b.allocate(), *_interleave(rng, chains)]
    verifications = rng.choices([0, 1, 2], weights=[5, 4, 1])[0]
    events += [b.verified() for _ in range(verifications)]
    if rare:
        # a path that is rare but normal: re-replication of an under-replicated block, maybe served twice
        events += b.rereplication()
        if rng.random() < 0.5:
            events.append(b.verified())
    if rng.random() < 0.3:
        events += b.deletion(replicas + (1 if rare else 0))
    return events


def _anomalous(rng: random.Random, kind: str) -> list[str]:
    events = _normal(rng, rare=False)
    b = _Block(rng)
    blk = events[0].rsplit(" ", 1)[1]
    b.blk = blk
    if kind == "exception":
        where = rng.randint(1, len(events))
        for _ in range(rng.randint(1, 2)):
            events.insert(where, b.fill(rng.choice(_EXCEPTIONS)))
        if rng.random() < 0.5:  # the failed replica never terminates
            term = [i for i, e in enumerate(events) if e.startswith("PacketResponder") and e.endswith("terminating")]
            if term:
                events.pop(rng.choice(term))
    elif kind == "missing-step":
        prefixes = ("PacketResponder", "BLOCK* NameSystem.addStoredBlock", "Received block")
        prefix = rng.choice(prefixes)
        idx = [i for i, e in enumerate(events) if e.startswith(prefix)]
        events.pop(rng.choice(idx))
    elif kind == "wrong-count":
        idx = [
            i
            for i, e in enumerate(events)
            if e.startswith(("Received block", "Receiving block", "BLOCK* NameSystem.addStoredBlock"))
        ]
        i = rng.choice(idx)
        events.insert(i + 1, events[i])
    elif kind == "ordering":
        if rng.random() < 0.5:  # stored before anything was received
            store = next(i for i, e in enumerate(events) if e.startswith("BLOCK* NameSystem.addStoredBlock"))
            events.insert(1, events.pop(store))
        else:  # deleted before it was allocated
            events = b.deletion(1) + events
    else:  # namenode
        events.insert(rng.randint(1, len(events)), b.fill(rng.choice(_NAMENODE_ODD)))
    return events


def generate(n: int, *, seed: int = 7, anomaly_rate: float = 0.03, rare_rate: float = 0.02) -> list[Session]:
    """``n`` labelled block sessions (deterministic for a seed)."""
    rng = random.Random(seed)
    out: list[Session] = []
    for k in range(n):
        sid = f"blk-{seed}-{k}"
        u = rng.random()
        if u < anomaly_rate:
            kind = rng.choice(ANOMALY_KINDS)
            out.append(Session(sid, _anomalous(rng, kind), True, kind))
        elif u < anomaly_rate + rare_rate:
            out.append(Session(sid, _normal(rng, rare=True), False, "rare-normal"))
        else:
            out.append(Session(sid, _normal(rng, rare=False), False, "normal"))
    return out


def train_test(
    *, seed: int = 7, n_train: int = 4000, n_test: int = 4000, contamination: float = 0.01, rare_rate: float = 0.02
) -> tuple[list[Session], list[Session]]:
    """A training set (normal sessions with ``contamination`` anomalies, unlabelled for the model) and a test set
    (about 3% anomalies)."""
    return (
        generate(n_train, seed=seed, anomaly_rate=contamination, rare_rate=rare_rate),
        generate(n_test, seed=seed + 1000, anomaly_rate=0.03, rare_rate=rare_rate),
    )


def prf(truth: Sequence[bool], predicted: Sequence[bool]) -> tuple[float, float, float]:
    tp = sum(t and p for t, p in zip(truth, predicted, strict=True))
    fp = sum(p and not t for t, p in zip(truth, predicted, strict=True))
    fn = sum(t and not p for t, p in zip(truth, predicted, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def evaluate(
    *, seed: int = 7, n_train: int = 4000, n_test: int = 4000, rare_rate: float = 0.02
) -> dict[str, dict[str, float]]:
    """Precision/recall/F1 of Vigil's session model and of an Isolation Forest baseline on one corpus."""
    import numpy as np
    from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]

    from vigil.analysis.sessions import SessionModel

    train, test = train_test(seed=seed, n_train=n_train, n_test=n_test, rare_rate=rare_rate)
    truth = [s.anomalous for s in test]
    model = SessionModel().fit([s.events for s in train])
    ours = [r.anomalous for r in model.score_many([(s.id, s.events) for s in test])]
    results: dict[str, dict[str, float]] = {}
    p, r, f = prf(truth, ours)
    results["vigil"] = {"precision": p, "recall": r, "f1": f}

    # the baseline sees every template of the training set (not only the frequent ones the model keeps)
    vocab = sorted({key for s in train for key in model.keys(s.events)})
    index = {t: i for i, t in enumerate(vocab)}

    def vectors(sessions: Sequence[Session]) -> np.ndarray:
        x = np.zeros((len(sessions), len(vocab) + 1))
        for row, s in enumerate(sessions):
            for key in model.keys(s.events):
                x[row, index.get(key, len(vocab))] += 1
        return x

    forest = IsolationForest(n_estimators=200, contamination=0.03, random_state=seed).fit(vectors(train))
    iso = [bool(v == -1) for v in forest.predict(vectors(test))]
    p, r, f = prf(truth, iso)
    results["isolation_forest"] = {"precision": p, "recall": r, "f1": f}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=4000)
    parser.add_argument("--rare-rate", type=float, default=0.02, help="Share of rare-but-normal sessions.")
    args = parser.parse_args(argv)
    results = evaluate(seed=args.seed, n_train=args.train, n_test=args.test, rare_rate=args.rare_rate)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
