# ruff: noqa: E501  (log line templates are long by nature)
"""A labelled, reproducible log corpus for template-mining benchmarks (Loghub-style, generated).

Loghub cannot be downloaded here, so this module *generates* a corpus: for each of 16 "systems" a set of
realistic line templates (taken from the shapes of HDFS, Hadoop, Spark, Zookeeper, OpenSSH, Linux syslog,
Apache and nginx error logs, Kubernetes kubelet, PostgreSQL, Spring Boot, Python apps, Windows CBS, Android,
BGL, Thunderbird and JSON service logs) filled with realistic variable values from a seeded RNG, with skewed
(Zipf-like) template frequencies. Every generated line carries its ground-truth template id.

Each line has the raw form (with the system's header: timestamp, level, logger, pid, ...) and the message
(Loghub's "Content" column). Grouping accuracy is measured on messages, like the Loghub benchmark, which is
given each system's header format; the raw lines exercise :func:`vigil.analysis.normalise.normalise`.

Caveat: a generated corpus is easier than real Loghub data: the templates are known to be clean, the value
generators have finite vocabularies, and there are no mislabelled lines. Treat its scores as a regression
guard, not as a Loghub result.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Gen = Callable[[random.Random], str]

_WORDS = ["alpha", "beta", "gamma", "delta", "omega", "kilo", "lima", "tango", "zulu", "nova"]
_USERS = [
    "root",
    "admin",
    "oracle",
    "test",
    "guest",
    "ubuntu",
    "postgres",
    "deploy",
    "jenkins",
    "git",
    "alice",
    "bob",
    "carol",
    "ftp",
    "www-data",
    "nagios",
]
_HOSTS = ["web", "db", "cache", "api", "auth", "worker", "gateway", "queue", "search", "payments", "checkout"]
_CLASSES = ["OrderService", "PaymentClient", "InventoryRepository", "UserController", "CartManager", "ShippingAdapter"]
_METHODS = ["process", "handle", "fetch", "update", "validate", "submit", "retry", "commit"]
_TABLES = ["orders", "users", "payments", "carts", "inventory", "sessions", "audit_log"]
_PKGS = ["com.acme.shop", "com.acme.billing", "org.example.core", "io.vigil.demo"]
_PY_MODULES = ["app.api", "app.db", "app.workers.sync", "app.payments", "app.auth"]
_SVCS = ["checkout", "payments", "inventory", "frontend", "cart", "shipping"]
_STATES = ["RUNNING", "SUCCEEDED", "FAILED", "KILLED", "ACCEPTED", "NEW"]
_NS = ["default", "kube-system", "monitoring", "shop", "ingress-nginx"]
_ANDROID_TAGS = ["WindowManager", "ActivityManager", "PowerManagerService", "InputReader"]
_HTTP = ["GET", "POST", "PUT", "DELETE", "PATCH"]
_REASONS = ["timeout", "reset", "refused", "unreachable"]


def _int(lo: int, hi: int) -> Gen:
    return lambda r: str(r.randint(lo, hi))


def _choice(values: list[str]) -> Gen:
    return lambda r: r.choice(values)


def _hex(n: int) -> Gen:
    return lambda r: "".join(r.choice("0123456789abcdef") for _ in range(n))


def _ip(r: random.Random) -> str:
    return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"


def _uuid(r: random.Random) -> str:
    h = "".join(r.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _path(r: random.Random) -> str:
    parts = r.sample(["var", "lib", "data", "tmp", "app", "cache", "logs", "srv", "home", "opt"], r.randint(2, 4))
    return "/" + "/".join(parts) + f"/{r.choice(_WORDS)}_{r.randint(1, 999)}.{r.choice(['log', 'dat', 'json'])}"


def _url_path(r: random.Random) -> str:
    return f"/api/v{r.randint(1, 2)}/{r.choice(_TABLES)}/{r.randint(1, 99999)}"


def _pod(r: random.Random) -> str:
    return (
        f"{r.choice(_SVCS)}-{_hex(9)(r)}-{''.join(r.choice(string.ascii_lowercase + string.digits) for _ in range(5))}"
    )


def _ms(r: random.Random) -> str:
    return f"{r.uniform(0.1, 5000):.{r.randint(0, 3)}f}"


def _blk(r: random.Random) -> str:
    return f"blk_{r.choice(['', '-'])}{r.randint(10**17, 10**19)}"


def _email(r: random.Random) -> str:
    return f"{r.choice(_USERS)}{r.randint(1, 99)}@{r.choice(['example.com', 'acme.io', 'mail.org'])}"


def _words(r: random.Random) -> str:
    """A variable-length phrase (as in free-text fields); hard for every token-count-keyed miner."""
    return " ".join(r.choice(_WORDS) for _ in range(r.randint(1, 3)))


GENERATORS: dict[str, Gen] = {
    "ip": _ip,
    "port": _int(1024, 65535),
    "int": _int(0, 5000),
    "big": _int(10**6, 10**12),
    "pid": _int(100, 65000),
    "hex8": _hex(8),
    "hex16": _hex(16),
    "hex64": _hex(64),
    "uuid": _uuid,
    "path": _path,
    "url": _url_path,
    "user": _choice(_USERS),
    "host": lambda r: f"{r.choice(_HOSTS)}-{r.randint(1, 40)}",
    "word": _choice(_WORDS),
    "cls": _choice(_CLASSES),
    "method": _choice(_METHODS),
    "table": _choice(_TABLES),
    "pkg": _choice(_PKGS),
    "pymod": _choice(_PY_MODULES),
    "svc": _choice(_SVCS),
    "state": _choice(_STATES),
    "ns": _choice(_NS),
    "pod": _pod,
    "ms": _ms,
    "blk": _blk,
    "email": _email,
    "http": _choice(_HTTP),
    "status": _choice(["200", "201", "204", "301", "400", "404", "500", "502", "503"]),
    "reason": _choice(_REASONS),
    "words": _words,
    "appid": lambda r: f"application_{r.randint(1400000000000, 1500000000000)}_{r.randint(1, 9999):04d}",
    "container": lambda r: (
        f"container_{r.randint(1400000000000, 1500000000000)}_{r.randint(1, 99):04d}_01_{r.randint(1, 999999):06d}"
    ),
    "attempt": lambda r: (
        f"attempt_{r.randint(1400000000000, 1500000000000)}_{r.randint(1, 99):04d}_m_{r.randint(1, 999999):06d}_{r.randint(0, 3)}"
    ),
    "zxid": lambda r: f"0x{r.randint(1, 2**40):x}",
    "node": lambda r: (
        f"R{r.randint(0, 77):02d}-M{r.randint(0, 1)}-N{r.randint(0, 15)}-C:J{r.randint(2, 17):02d}-U{r.randint(1, 11):02d}"
    ),
    "tag": _choice(_ANDROID_TAGS),
    "activity": lambda r: (
        f"com.android.{r.choice(['settings', 'camera', 'phone', 'launcher'])}/.{r.choice(['Main', 'Settings', 'Home'])}Activity"
    ),
    "kb": lambda r: f"{r.randint(1, 999999)}kB",
    "pct": lambda r: f"{r.uniform(0, 100):.1f}%",
    "sql": _choice(
        [
            "SELECT * FROM orders WHERE id = $1",
            "UPDATE carts SET total = $1 WHERE id = $2",
            "INSERT INTO audit_log VALUES ($1, $2, $3)",
        ]
    ),
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class System:
    name: str
    header: Callable[[random.Random, datetime, str], str]
    templates: list[str]


@dataclass(frozen=True)
class LabelledLine:
    system: str
    template: str
    label: str
    message: str
    raw: str


def _level(r: random.Random, template: str) -> str:
    low = template.lower()
    if any(w in low for w in ("fail", "error", "exception", "refused", "denied", "invalid", "kill")):
        return "ERROR"
    if any(w in low for w in ("warn", "retry", "timeout", "slow", "deprecat")):
        return "WARN"
    return "INFO"


SYSTEMS: list[System] = [
    System(
        "HDFS",
        lambda r, t, tpl: f"{t:%y%m%d %H%M%S} {r.randint(1, 30000)} {_level(r, tpl)} dfs.DataNode$PacketResponder: ",
        [
            "Receiving block {blk} src: /{ip}:{port} dest: /{ip}:{port}",
            "Received block {blk} of size {big} from /{ip}",
            "PacketResponder {int} for block {blk} terminating",
            "BLOCK* NameSystem.addStoredBlock: blockMap updated: {ip}:{port} is added to {blk} size {big}",
            "BLOCK* NameSystem.allocateBlock: {path} {blk}",
            "Deleting block {blk} file {path}",
            "BLOCK* NameSystem.delete: {blk} is added to invalidSet of {ip}:{port}",
            "{ip}:{port} Served block {blk} to /{ip}",
            "{ip}:{port}:Got exception while serving {blk} to /{ip}:",
            "Verification succeeded for {blk}",
            "BLOCK* ask {ip}:{port} to replicate {blk} to datanode(s) {ip}:{port}",
            "writeBlock {blk} received exception java.io.IOException: Connection reset by peer",
            "PendingReplicationMonitor timed out block {blk}",
            "Exception in receiveBlock for block {blk} java.io.EOFException",
        ],
    ),
    System(
        "Hadoop",
        lambda r, t, tpl: (
            f"{t:%Y-%m-%d %H:%M:%S},{r.randint(0, 999):03d} {_level(r, tpl)} [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: "
        ),
        [
            "Created MRAppMaster for application {appid}",
            "Executing with tokens:",
            "Kind: YARN_AM_RM_TOKEN, Service: , Ident: (appAttemptId {{ application_id {{ id: {int} cluster_timestamp: {big} }} attemptId: {int} }} keyId: {big})",
            "Using mapred newApiCommitter.",
            "OutputCommitter set in config null",
            "Default file system [hdfs://{host}:{port}]",
            "{attempt} TaskAttempt Transitioned from NEW to UNASSIGNED",
            "{attempt} TaskAttempt Transitioned from UNASSIGNED to ASSIGNED",
            "Assigned container {container} to {attempt}",
            "Progress of TaskAttempt {attempt} is : {ms}",
            "Diagnostics report from {attempt}: Error: java.net.NoRouteToHostException: No Route to Host from {host} to {host}:{port} failed on socket timeout exception",
            "Num completed Tasks: {int}",
            "Address change detected. Old: {host}/{ip}:{port} New: {host}:{port}",
            "Retrying connect to server: {host}:{port}. Already tried {int} time(s); maxRetries={int}",
            "Job jar is not present. Not adding any jar to the list of resources.",
        ],
    ),
    System(
        "Spark",
        lambda r, t, tpl: f"{t:%y/%m/%d %H:%M:%S} {_level(r, tpl)} executor.Executor: ",
        [
            "Running task {ms} in stage {ms} (TID {int})",
            "Finished task {ms} in stage {ms} (TID {int}). {int} bytes result sent to driver",
            "Found block rdd_{int}_{int} locally",
            "Started reading broadcast variable {int}",
            "Reading broadcast variable {int} took {int} ms",
            "Block broadcast_{int} stored as values in memory (estimated size {ms} KB, free {ms} MB)",
            "Got assigned task {int}",
            "Partition rdd_{int}_{int} not found, computing it",
            "Input split: hdfs://{host}:{port}{path}:{int}+{int}",
            "Changing view acls to: {user}",
            "SecurityManager: authentication disabled; ui acls disabled; users with view permissions: Set({user}); users with modify permissions: Set({user})",
            "Successfully started service 'sparkExecutorActorSystem' on port {port}.",
            "Registered signal handlers for [TERM, HUP, INT]",
            "Lost task {ms} in stage {ms} (TID {int}, {host}): ExecutorLostFailure (executor {int} exited caused by one of the running tasks)",
        ],
    ),
    System(
        "Zookeeper",
        lambda r, t, tpl: (
            f"{t:%Y-%m-%d %H:%M:%S},{r.randint(0, 999):03d} - {_level(r, tpl)}  [NIOServerCxn.Factory:0.0.0.0/0.0.0.0:2181:NIOServerCnxn@{r.randint(100, 1100)}] - "
        ),
        [
            "Accepted socket connection from /{ip}:{port}",
            "Client attempting to establish new session at /{ip}:{port}",
            "Established session {zxid} with negotiated timeout {int} for client /{ip}:{port}",
            "Closed socket connection for client /{ip}:{port} which had sessionid {zxid}",
            "Closed socket connection for client /{ip}:{port} (no session established for client)",
            "caught end of stream exception",
            "Processed session termination for sessionid: {zxid}",
            "Expiring session {zxid}, timeout of {int}ms exceeded",
            "Connection broken for id {int}, my id = {int}, error =",
            "Notification: {int} (n.leader), {zxid} (n.zxid), {zxid} (n.round), LOOKING (n.state), {int} (n.sid), {zxid} (n.peerEPoch), LOOKING (my state)",
            "Cannot open channel to {int} at election address /{ip}:{port}",
            "Send worker leaving thread",
            "Interrupted while waiting for message on queue",
        ],
    ),
    System(
        "OpenSSH",
        lambda r, t, tpl: f"{t:%b %d %H:%M:%S} LabSZ sshd[{r.randint(1000, 30000)}]: ",
        [
            "Failed password for {user} from {ip} port {port} ssh2",
            "Failed password for invalid user {user} from {ip} port {port} ssh2",
            "Invalid user {user} from {ip}",
            "input_userauth_request: invalid user {user} [preauth]",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}",
            "pam_unix(sshd:auth): check pass; user unknown",
            "Received disconnect from {ip}: 11: Bye Bye [preauth]",
            "Connection closed by {ip} [preauth]",
            "Accepted password for {user} from {ip} port {port} ssh2",
            "pam_unix(sshd:session): session opened for user {user} by (uid=0)",
            "pam_unix(sshd:session): session closed for user {user}",
            "reverse mapping checking getaddrinfo for {host}.example.net [{ip}] failed - POSSIBLE BREAK-IN ATTEMPT!",
            "Disconnecting: Too many authentication failures for {user} [preauth]",
            "error: Received disconnect from {ip}: 3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
            "message repeated {int} times: [ Failed password for {user} from {ip} port {port} ssh2]",
            "PAM {int} more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}",
        ],
    ),
    System(
        "Linux",
        lambda r, t, tpl: (
            f"{t:%b %d %H:%M:%S} combo {r.choice(['kernel', 'su(pam_unix)', 'cups', 'logrotate', 'ftpd'])}[{r.randint(1000, 30000)}]: "
        ),
        [
            "session opened for user {user} by (uid={int})",
            "session closed for user {user}",
            "authentication failure; logname= uid={int} euid={int} tty=NODEVssh ruser= rhost={host}.example.com",
            "connection from {ip} () at {word} {int}",
            "ALERT exited abnormally with [{int}]",
            "Out of Memory: Killed process {pid} ({word}).",
            "cupsd shutdown succeeded",
            "cupsd startup succeeded",
            "check pass; user unknown",
            "Kernel command line: ro root=LABEL=/ rhgb quiet",
            "Memory: {kb}/{kb} available ({kb} kernel code, {kb} reserved, {kb} data, {kb} init, {kb} highmem)",
            "audit({ms}:{int}): initialized",
            "{word}: link is not ready",
            "usb {int}-{int}: new high speed USB device using ehci_hcd and address {int}",
            "klogd {ms}, log source = /proc/kmsg started.",
        ],
    ),
    System(
        "Apache",
        lambda r, t, tpl: f"[{t:%a %b %d %H:%M:%S %Y}] [{'error' if _level(r, tpl) == 'ERROR' else 'notice'}] ",
        [
            "jk2_init() Found child {pid} in scoreboard slot {int}",
            "workerEnv.init() ok /etc/httpd/conf/workers2.properties",
            "mod_jk child workerEnv in error state {int}",
            "[client {ip}] Directory index forbidden by rule: /var/www/html/",
            "[client {ip}] File does not exist: {path}",
            "jk2_init() Can't find child {pid} in scoreboard",
            "child {pid} exited with status {int}",
            "Apache/2.0.49 (Unix) configured -- resuming normal operations",
            "caught SIGTERM, shutting down",
            "[client {ip}] script not found or unable to stat: {path}",
            "Digest: generating secret for digest authentication ...",
            "suEXEC mechanism enabled (wrapper: /usr/sbin/suexec)",
            '[client {ip}] user {user}: authentication failure for "{url}": Password Mismatch',
        ],
    ),
    System(
        "Nginx",
        lambda r, t, tpl: (
            f"{t:%Y/%m/%d %H:%M:%S} [{_level(r, tpl).lower().replace('warn', 'warn')}] {r.randint(1, 999)}#{r.randint(0, 9)}: "
        ),
        [
            '*{int} connect() failed (111: Connection refused) while connecting to upstream, client: {ip}, server: shop.example.com, request: "{http} {url} HTTP/1.1", upstream: "http://{ip}:{port}{url}", host: "shop.example.com"',
            '*{int} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {ip}, server: shop.example.com, request: "{http} {url} HTTP/1.1", upstream: "http://{ip}:{port}{url}", host: "shop.example.com"',
            '*{int} open() "{path}" failed (2: No such file or directory), client: {ip}, server: shop.example.com, request: "GET {url} HTTP/1.1", host: "shop.example.com"',
            "*{int} client intended to send too large body: {big} bytes, client: {ip}, server: shop.example.com",
            "*{int} upstream prematurely closed connection while reading response header from upstream, client: {ip}",
            "*{int} no live upstreams while connecting to upstream, client: {ip}, server: shop.example.com",
            "signal process started",
            'using the "epoll" event method',
            "start worker process {pid}",
            '*{int} limiting requests, excess: {ms} by zone "api", client: {ip}',
            "worker process {pid} exited on signal {int}",
            "*{int} SSL_do_handshake() failed (SSL: error:{hex8}:SSL routines) while SSL handshaking, client: {ip}",
        ],
    ),
    System(
        "Kubernetes",
        lambda r, t, tpl: (
            f"{_level(r, tpl)[0]}{t:%m%d %H:%M:%S}.{r.randint(0, 999999):06d}    {r.randint(1000, 9999)} {r.choice(['kubelet.go', 'pod_workers.go', 'kuberuntime_manager.go'])}:{r.randint(100, 2999)}] "
        ),
        [
            '"SyncLoop (PLEG): event for pod" pod="{ns}/{pod}" event={{ID:{uuid} Type:ContainerStarted Data:{hex64}}}',
            '"Killing container with a grace period" pod="{ns}/{pod}" podUID={uuid} containerName="{svc}" containerID="containerd://{hex64}" gracePeriod=30',
            '"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"{svc}\\" with CrashLoopBackOff: \\"back-off 5m0s restarting failed container={svc} pod={pod}_{ns}({uuid})\\"" pod="{ns}/{pod}" podUID={uuid}',
            '"Probe failed" probeType="Readiness" pod="{ns}/{pod}" podUID={uuid} containerName="{svc}" probeResult=failure output="Get \\"http://{ip}:{port}/healthz\\": dial tcp {ip}:{port}: connect: connection refused"',
            '"SyncLoop ADD" source="api" pods=[{ns}/{pod}]',
            '"SyncLoop DELETE" source="api" pods=[{ns}/{pod}]',
            '"RemoveContainer" containerID="{hex64}"',
            '"Eviction manager: attempting to reclaim" resourceName="memory"',
            'Successfully pulled image "registry.example.com/{svc}:v1.{int}.{int}" in {ms}ms',
            "Container {svc} failed liveness probe, will be restarted",
            "OOMKilled: container {svc} in pod {ns}/{pod} exceeded memory limit",
            "Volume {word} mounted for pod {ns}/{pod}",
            "Node {host} status is now: NodeNotReady",
        ],
    ),
    System(
        "PostgreSQL",
        lambda r, t, tpl: (
            f"{t:%Y-%m-%d %H:%M:%S}.{r.randint(0, 999):03d} UTC [{r.randint(100, 65000)}] {'ERROR' if _level(r, tpl) == 'ERROR' else 'LOG'}:  "
        ),
        [
            "connection received: host={ip} port={port}",
            "connection authorized: user={user} database={table} application_name=psql",
            "disconnection: session time: 0:00:{ms} user={user} database={table} host={ip} port={port}",
            "duration: {ms} ms  statement: {sql}",
            "checkpoint starting: time",
            "checkpoint complete: wrote {int} buffers ({pct}); 0 WAL file(s) added, 0 removed, {int} recycled; write={ms} s, sync={ms} s, total={ms} s",
            'relation "{table}" does not exist at character {int}',
            'duplicate key value violates unique constraint "{table}_pkey"',
            "could not serialize access due to concurrent update",
            'password authentication failed for user "{user}"',
            'automatic vacuum of table "shop.public.{table}": index scans: {int}',
            "canceling statement due to statement timeout",
            "terminating connection due to administrator command",
            "database system is ready to accept connections",
        ],
    ),
    System(
        "JavaApp",
        lambda r, t, tpl: (
            f"{t:%Y-%m-%d %H:%M:%S}.{r.randint(0, 999):03d}  {_level(r, tpl):>5} {r.randint(1, 9)} --- [nio-8080-exec-{r.randint(1, 20)}] c.a.shop.{r.choice(_CLASSES)} : "
        ),
        [
            "Order {uuid} created for customer {int} total={ms} EUR",
            "Payment for order {uuid} declined: insufficient funds",
            "HikariPool-1 - Connection is not available, request timed out after {int}ms.",
            "Started ShopApplication in {ms} seconds (JVM running for {ms})",
            "Tomcat started on port(s): 8080 (http) with context path ''",
            "Calling {svc} at http://{svc}:{port}{url} took {int} ms",
            "Retrying {method} on {cls} (attempt {int} of 3)",
            "Cache miss for key product:{int}",
            "Failed to {method} {cls}: {reason}",
            "User {email} logged in from {ip}",
            "Scheduled job {word} finished in {int} ms, {int} items processed",
            "Circuit breaker {svc} changed state from CLOSED to OPEN",
            "Circuit breaker {svc} changed state from OPEN to HALF_OPEN",
        ],
    ),
    System(
        "PythonApp",
        lambda r, t, tpl: (
            f"{t:%Y-%m-%d %H:%M:%S},{r.randint(0, 999):03d} - {r.choice(_PY_MODULES)} - {_level(r, tpl).replace('WARN', 'WARNING')} - "
        ),
        [
            "Processing batch {int} with {int} records",
            "Synced {int} rows from {table} in {ms}s",
            "Task {uuid} failed: ConnectionError('{reason}')",
            "Worker {host} heartbeat ok, queue depth {int}",
            "Retrying request to https://{svc}.internal{url} in {int}s",
            "Loaded configuration from {path}",
            "User {user} requested export of {table}",
            "Slow query on {table}: {ms}s",
            "Rate limit exceeded for tenant {int}, dropping {int} events",
            "Shutting down gracefully",
            "Cache warmed: {int} keys in {ms}ms",
            "Uploaded {path} ({kb}) to s3://bucket-{int}/{word}",
        ],
    ),
    System(
        "Windows",
        lambda r, t, tpl: (
            f"{t:%Y-%m-%d %H:%M:%S}, {'Error' if _level(r, tpl) == 'ERROR' else 'Info'}                  CBS    "
        ),
        [
            "Loaded Servicing Stack v6.1.7601.{int} with Core: C:\\Windows\\winsxs\\amd64_microsoft-windows-servicingstack_31bf3856ad364e35_6.1.7601.{int}_none_{hex16}\\cbscore.dll",
            "Session: {int}_{int} initialized by client WindowsUpdateAgent.",
            "Read out cached package applicability for package: Package_for_KB{int}~31bf3856ad364e35~amd64~~6.1.1.{int}, ApplicableState: {int}, CurrentState:{int}",
            "Starting TrustedInstaller initialization.",
            "Ending TrustedInstaller initialization.",
            "Starting the TrustedInstaller main loop.",
            "TrustedInstaller service starts successfully.",
            "No startup processing required, TrustedInstaller service was not set as autostart",
            "SQM: Initializing online with Windows opt-in: False",
            "SQM: Cleaning up report files older than {int} days.",
            "Warning: Unrecognized packageExtended attribute.",
            "Failed to get next element [HRESULT = 0x{hex8} - E_FAIL]",
            "Expecting attribute name [HRESULT = 0x{hex8} - CBS_E_MANIFEST_INVALID_ITEM]",
        ],
    ),
    System(
        "Android",
        lambda r, t, tpl: (
            f"{t:%m-%d %H:%M:%S}.{r.randint(0, 999):03d}  {r.randint(1000, 3000)}  {r.randint(1000, 9000)} {_level(r, tpl)[0].replace('I', r.choice('IDV'))} {r.choice(_ANDROID_TAGS)}: "
        ),
        [
            'acquire lock={big}, flags=0x{int}, tag="View Lock", name=com.android.systemui, ws=null, uid={int}, pid={pid}',
            'release lock={big}, flags=0x{int}, tag="RILJ_ACK_WL", name=com.android.phone, ws=null, uid={int}, pid={pid}',
            "Skipping AppWindowToken{{{hex8} token=Token{{{hex8} ActivityRecord{{{hex8} u0 {activity} t{int}}}}}}} -- going to hide",
            "setSystemUiVisibility vis={hex8} mask={hex8} oldVal={hex8} newVal={hex8} diff={hex8}",
            "printFreezingDisplayLogs opening app wtoken = AppWindowToken{{{hex8} token=Token{{{hex8} ActivityRecord{{{hex8} u0 {activity} t{int}}}}}}}, allDrawn= false, startingDisplayed =  false, startingMoved =  false, isRelaunching =  false",
            "Start proc {pid}:{activity}/u0a{int} for activity {activity}",
            "Displayed {activity}: +{int}ms",
            "updateIsPoweredLocked: wasPowered=true, mIsPowered=true, mPlugType=2, mBatteryLevel={int}",
            "Input event injection from pid {pid} failed.",
            "Unable to start service Intent {{ act=com.android.{word}.START }} U=0: not found",
        ],
    ),
    System(
        "BGL",
        lambda r, t, tpl: (
            f"- {int(t.timestamp())} {t:%Y.%m.%d} {GENERATORS['node'](r)} {t:%Y-%m-%d-%H.%M.%S}.{r.randint(0, 999999):06d} {GENERATORS['node'](r)} RAS KERNEL {'FATAL' if _level(r, tpl) == 'ERROR' else 'INFO'} "
        ),
        [
            "instruction cache parity error corrected",
            "generating core.{int}",
            "data TLB error interrupt",
            "ciod: failed to read message prefix on control stream (CioStream socket to {ip}:{port}",
            "ciod: Error loading {path}: invalid or missing program image, No such file or directory",
            "{int} double-hummer alignment exceptions",
            "CE sym {int}, at 0x{hex8}, mask 0x{int}",
            "total of {int} ddr error(s) detected and corrected",
            "machine check interrupt (bit=0x{int}): L2 dcache unit data parity error",
            "rts: kernel terminated for reason {int}rts: bad message header: invalid cpu, type={int}, cpu={int}, index={int}, total={int}",
            "Lustre mount FAILED : {node} : block_id : location",
            "ddr: activating redundant bit steering: rank={int} symbol={int}",
        ],
    ),
    System(
        "JSONService",
        lambda r, t, tpl: "",
        [
            "request completed",
            "request failed",
            "order {uuid} placed by {email}",
            "payment provider {svc} returned {status} after {int}ms",
            "db pool exhausted: {int} waiting, {int} in use",
            "feature flag {word} evaluated to {word} for user {int}",
            "health check passed",
            "retrying {http} {url} after {ms}s ({reason})",
            "cache {word} evicted {int} keys",
            "checkout total {ms} for cart {hex16}",
        ],
    ),
]


def _render(template: str, rng: random.Random) -> str:
    # Literal braces are written doubled in templates; protect them from the placeholder pass.
    protected = template.replace("{{", "\x01").replace("}}", "\x02")
    filled = _PLACEHOLDER.sub(lambda m: GENERATORS[m.group(1)](rng), protected)
    return filled.replace("\x01", "{").replace("\x02", "}")


def _json_line(rng: random.Random, t: datetime, template: str, message: str) -> str:
    import json

    level = _level(rng, template).lower().replace("warn", "warning")
    record = {
        "ts": t.isoformat().replace("+00:00", "Z"),
        "level": level,
        "logger": f"shop.{rng.choice(_SVCS)}",
        "msg": message,
        "trace_id": _hex(32)(rng),
        "status": rng.choice(["200", "500"]),
    }
    return json.dumps(record)


def generate(system: System, n: int = 2000, seed: int = 7) -> list[LabelledLine]:
    """``n`` labelled lines of ``system``; the same ``seed`` gives the same lines."""
    rng = random.Random(f"{system.name}:{seed}")
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(system.templates))]
    order = list(range(len(system.templates)))
    rng.shuffle(order)
    t = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
    out: list[LabelledLine] = []
    for i in range(n):
        # Every template appears at least once; the rest follows a Zipf-like skew.
        index = order[i] if i < len(order) else rng.choices(order, weights=weights)[0]
        template = system.templates[index]
        message = _render(template, rng)
        t += timedelta(milliseconds=rng.randint(1, 4000))
        if system.name == "JSONService":
            raw = _json_line(rng, t, template, message)
        else:
            raw = system.header(rng, t, template) + message
        out.append(LabelledLine(system.name, template, f"{system.name}-{index}", message, raw))
    return out


def corpus(n: int = 2000, seed: int = 7) -> dict[str, list[LabelledLine]]:
    """The whole corpus: system name -> its labelled lines."""
    return {system.name: generate(system, n, seed) for system in SYSTEMS}


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Loghub's grouping accuracy: the share of lines whose predicted group holds exactly the lines of their
    ground-truth group (a line counts as correct iff the two sets of lines are equal)."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted must have the same length")
    if not truth:
        return 1.0
    by_truth: dict[Hashable, set[int]] = {}
    by_pred: dict[Hashable, set[int]] = {}
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        by_truth.setdefault(t, set()).add(i)
        by_pred.setdefault(p, set()).add(i)
    correct = 0
    for members in by_pred.values():
        first = next(iter(members))
        if by_truth[truth[first]] == members:
            correct += len(members)
    return correct / len(truth)


__all__ = ["SYSTEMS", "LabelledLine", "System", "corpus", "generate", "grouping_accuracy"]
