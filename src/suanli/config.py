"""Settings from the environment (SUANLI_*). Read once at start and passed down."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _location(text: str) -> tuple[float, float] | None:
    """SUANLI_NETWORK_LOCATION: 'longitude,latitude' (e.g. 120.38,36.07), or empty."""
    if not text.strip():
        return None
    try:
        lon, lat = (float(x) for x in text.split(","))
    except ValueError as exc:
        raise ValueError("SUANLI_NETWORK_LOCATION is 'longitude,latitude', e.g. 120.38,36.07, "
                         f"not {text!r}") from exc
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"SUANLI_NETWORK_LOCATION {text!r} is not on Earth")
    return lon, lat


def _optional_seconds(name: str) -> float | None:
    """Seconds (0 or more), or None when unset or empty."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    value = _float(name, 0.0)
    if value < 0:
        raise ValueError(f"{name} must be 0 or more seconds, got {raw!r}")
    return value


def _count(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def parse_networks(text: str, name: str = "SUANLI_TRUSTED_PROXIES") -> tuple[IPNetwork, ...]:
    """'127.0.0.1, 10.0.0.0/8, ::1' -> networks (a bare address is a network of one)."""
    nets: list[IPNetwork] = []
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{name}: {item!r} is not an IP address or network ({exc})") from exc
    return tuple(nets)


DEFAULT_NETWORK_ID = "CN-SD-QD"  # the demo city, Qingdao (Shandong)
_NETWORK_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{1,47}")


def network_id() -> str:
    """SUANLI_NETWORK_ID: upper-case letters, digits and '-', e.g. CN-SD-QD."""
    raw = (os.environ.get("SUANLI_NETWORK_ID") or DEFAULT_NETWORK_ID).strip()
    if not _NETWORK_ID.fullmatch(raw):
        raise ValueError("SUANLI_NETWORK_ID must be 2-48 upper-case letters, digits or '-' "
                         f"(e.g. CN-SD-QD), got {raw!r}")
    return raw


def default_home() -> Path:
    return Path(os.environ.get("SUANLI_HOME") or Path.home() / ".suanli").expanduser()


def write_private(path: Path, text: str) -> None:
    """Write a secret-bearing file (tokens, keys) readable by its owner only (0600), atomically:
    a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def secure_home(home: Path) -> list[Path]:
    """Make `home` and everything under it its owner's only (directories 0700, files 0600 or
    0700), and have this process create files that way (umask 077). Returns what was tightened.
    Jobs run as other users: nothing here — database, logs, keys, tokens — is theirs to read."""
    os.umask(0o077)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    tightened = []
    for top, _dirs, files in os.walk(home):
        for path in [Path(top)] + [Path(top, f) for f in files]:
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(mode) or not mode & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(mode) & 0o700)
            tightened.append(path)
    return tightened


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = "text"
    log_level: str = "INFO"
    scheduler_interval_s: float = 1.0
    max_body_bytes: int = 1 << 20
    health_interval_s: float = 10.0  # how often each center's health is checked
    health_failures: int = 3  # consecutive failed checks that mark a center offline
    failover_grace_s: float = 60.0  # how long an offline center keeps its jobs before re-placing
    fairshare_half_life_s: float = 7 * 86400.0  # past usage counts half after this long
    queue: str = "easy"  # each pool's queue: easy (EASY backfilling), conservative or fcfs
    engine_nice: int = 5  # the engine process's niceness: requests win the CPU from passes
    # Failed sign-ins counted over a sliding window, per username and per client address; past
    # either limit further attempts are refused without checking the password.
    signin_window_s: float = 900.0
    signin_failures_per_user: int = 5
    signin_failures_per_address: int = 20
    # Direct peers (a TLS proxy) whose X-Forwarded-For / X-Forwarded-Proto are believed.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    engine_restart_s: float = 1.0  # first wait before a dead engine process is restarted
    # The engine leader's lease (engine/lease.py): how long it lasts unless renewed, and how
    # often the leader renews it (and a standby tries to take it).
    lease_s: float = 10.0
    lease_renew_s: float = 2.0
    # The control plane's processes write a heartbeat row (`replicas`) this often; `suanli
    # status` lists those seen within `replica_seen_s` (docs/ha.md).
    heartbeat_s: float = 10.0
    replica_seen_s: float = 60.0
    # How long an API process believes a token lookup: a token revoked (or a user disabled)
    # through another replica is refused here within this many seconds (docs/replicas.md).
    token_cache_s: float = 4.0
    # Artifacts (work folders, inputs, outputs): where their bytes live (an fsspec URL; empty:
    # $SUANLI_HOME/artifacts), the largest one, each tenant's default quota (bytes and count),
    # how long job outputs are kept, and the URL centers reach suanli's API at (staging over
    # HTTP; empty: http://host:port).
    artifacts_url: str = ""
    artifact_max_bytes: int = 10 << 30
    uploads_per_tenant: int = 4  # streaming at once per API process (each may reach the max)
    storage_quota_bytes: int = 50 << 30
    storage_quota_count: int = 10_000
    outputs_retention_days: float = 30.0
    public_url: str = ""
    # This platform's identifier in the national compute network (统一标识): its centers are
    # NETWORK/center and its pools NETWORK/center/pool (docs/federation.md). And how often the
    # pools of each peer platform that lends us compute are discovered again.
    network_id: str = DEFAULT_NETWORK_ID
    peer_discovery_s: float = 60.0
    # Home first (HTCondor's flocking, made explicit): a job goes to a peer platform's pool only
    # when that finishes it this many seconds earlier than the best home pool; None: peers are
    # ranked like any pool. A tenant may have its own (`suanli tenant peer-rule`).
    peers_earlier_by_s: float | None = None
    # How this platform shows on a national view: its name, where it is (longitude, latitude),
    # and the map its own network view draws its member nodes on (docs/federation.md).
    network_name: str = ""
    network_location: tuple[float, float] | None = None
    network_map: str = "shandong"
    # The portal's test-only files (axe-core, the accessibility checker the browser tests load as
    # a file the page's own CSP allows): served only when set (SUANLI_WEB_TEST_ASSETS=1).
    web_test_assets: bool = False

    @property
    def artifacts_location(self) -> str:
        return self.artifacts_url or str(self.home / "artifacts")

    @property
    def api_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @staticmethod
    def from_env() -> Settings:
        home = default_home()
        url = os.environ.get("SUANLI_DATABASE_URL") or f"sqlite:///{home / 'suanli.db'}"
        port_raw = os.environ.get("SUANLI_PORT") or "8000"
        if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
            raise ValueError(f"SUANLI_PORT must be a port number, got {port_raw!r}")
        queue = (os.environ.get("SUANLI_QUEUE") or "easy").lower()
        if queue not in ("easy", "conservative", "fcfs"):
            raise ValueError(f"SUANLI_QUEUE must be easy, conservative or fcfs, got {queue!r}")
        lease_s = _float("SUANLI_LEASE_S", 10.0)
        lease_renew_s = _float("SUANLI_LEASE_RENEW_S", 2.0)
        if not 0 < lease_renew_s < lease_s:
            raise ValueError("SUANLI_LEASE_RENEW_S must be more than 0 and less than "
                             f"SUANLI_LEASE_S ({lease_renew_s} >= {lease_s})")
        heartbeat_s = max(0.1, _float("SUANLI_HEARTBEAT_S", 10.0))
        seen_s = max(1.0, _float("SUANLI_REPLICA_SEEN_S", 60.0))
        if heartbeat_s >= seen_s:  # every process would drop out of the list between heartbeats
            raise ValueError("SUANLI_HEARTBEAT_S must be less than SUANLI_REPLICA_SEEN_S "
                             f"({heartbeat_s:g} >= {seen_s:g})")
        return Settings(
            home=home,
            database_url=url,
            host=os.environ.get("SUANLI_HOST") or "127.0.0.1",
            port=int(port_raw),
            log_format=(os.environ.get("SUANLI_LOG_FORMAT") or "text").lower(),
            log_level=(os.environ.get("SUANLI_LOG_LEVEL") or "INFO").upper(),
            scheduler_interval_s=_float("SUANLI_SCHEDULER_INTERVAL", 1.0),
            health_interval_s=_float("SUANLI_HEALTH_INTERVAL", 10.0),
            health_failures=max(1, int(_float("SUANLI_HEALTH_FAILURES", 3))),
            failover_grace_s=_float("SUANLI_FAILOVER_GRACE", 60.0),
            fairshare_half_life_s=_float("SUANLI_FAIRSHARE_HALF_LIFE_H", 7 * 24.0) * 3600,
            queue=queue,
            engine_nice=min(19, max(0, int(_float("SUANLI_ENGINE_NICE", 5)))),
            signin_window_s=max(1.0, _float("SUANLI_SIGNIN_WINDOW", 900.0)),
            signin_failures_per_user=_count("SUANLI_SIGNIN_FAILURES_PER_USER", 5),
            signin_failures_per_address=_count("SUANLI_SIGNIN_FAILURES_PER_ADDRESS", 20),
            trusted_proxies=parse_networks(os.environ.get("SUANLI_TRUSTED_PROXIES") or ""),
            engine_restart_s=max(0.1, _float("SUANLI_ENGINE_RESTART_S", 1.0)),
            lease_s=lease_s,
            lease_renew_s=lease_renew_s,
            heartbeat_s=heartbeat_s,
            replica_seen_s=seen_s,
            token_cache_s=max(0.0, _float("SUANLI_TOKEN_CACHE_S", 4.0)),
            artifacts_url=os.environ.get("SUANLI_ARTIFACTS_URL") or "",
            artifact_max_bytes=_count("SUANLI_ARTIFACT_MAX_BYTES", 10 << 30),
            uploads_per_tenant=max(1, _count("SUANLI_UPLOADS_PER_TENANT", 4)),
            storage_quota_bytes=_count("SUANLI_STORAGE_QUOTA_BYTES", 50 << 30),
            storage_quota_count=_count("SUANLI_STORAGE_QUOTA_COUNT", 10_000),
            outputs_retention_days=max(0.0, _float("SUANLI_OUTPUTS_RETENTION_DAYS", 30.0)),
            public_url=os.environ.get("SUANLI_PUBLIC_URL") or "",
            network_id=network_id(),
            peer_discovery_s=max(1.0, _float("SUANLI_PEER_DISCOVERY_S", 60.0)),
            peers_earlier_by_s=_optional_seconds("SUANLI_PEERS_EARLIER_BY_S"),
            network_name=(os.environ.get("SUANLI_NETWORK_NAME") or "").strip()[:100],
            network_location=_location(os.environ.get("SUANLI_NETWORK_LOCATION") or ""),
            network_map=(os.environ.get("SUANLI_NETWORK_MAP") or "shandong").strip(),
            web_test_assets=os.environ.get("SUANLI_WEB_TEST_ASSETS", "") == "1",
        )
