"""Docker hosts of a fleet: what `--host` and the `hosts:` section of gobuild.yaml name, and one
engine client per host.

A host is a Docker endpoint, as the docker CLI takes it, with a label:

    local                                  the engine gobuild uses anyway (DOCKER_HOST, else the local socket)
    unix:///var/run/docker.sock            a local socket
    tcp://10.0.0.5:2376                    TCP; TLS: tls=DIR (ca.pem, cert.pem, key.pem), else
                                           DOCKER_TLS_VERIFY / DOCKER_CERT_PATH as docker -H
    ssh://pi@pi5.local                     over ssh (the ssh client and its ~/.ssh/config)
    pi5                                    a Docker context of that name (docker context ls)

`LABEL=ENDPOINT` names it (`pi5=ssh://pi@pi5.local`); options follow a comma
(`pi5=tcp://10.0.0.7:2376,tls=DIR,platforms=linux/arm64,timeout=30`); the long form takes
keys only: `label=board,url=tcp://10.0.0.7:2375,platforms=linux/arm64+linux/arm/v7`.
`platforms` declares what the host builds natively [default: its engine's own architecture];
the engine is asked for its architecture in any case, and benches go by that.

The config file (gobuild.yaml beside the matrix, or --config FILE) has the same as a list:

    hosts:
      - local
      - label: pi5
        url: ssh://pi@pi5.local
        platforms: [linux/arm64]
      - {label: x86, url: "tcp://10.0.0.5:2376", tls: ~/.docker/x86}
"""
from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click
import docker
import docker.errors
import docker.tls
import docker.utils
import requests
import requests.adapters
import yaml
from urllib3.connection import HTTPConnection

from . import engine
from .errors import ConfigError, EngineError
from .matrix import parse_platform

CONFIG_NAME = "gobuild.yaml"
LOCAL = "local"
SCHEMES = ("unix", "tcp", "ssh")
DEFAULT_TIMEOUT = 60
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEYS = ("label", "url", "platforms", "tls", "tlscacert", "tlscert", "tlskey", "timeout")
# A lost link shows as silence, not as an error: TCP keepalive probes on an idle connection
# (a container wait is one) turn ~15 s of silence into a connection error.
KEEPALIVE = ((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
             *(((socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5), (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 3),
                (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)) if hasattr(socket, "TCP_KEEPIDLE") else ()))


@dataclass(frozen=True, kw_only=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, kw_only=True)
class Host:
    """One Docker engine of the fleet, as the user named it."""

    label: str
    endpoint: str  # as given: local, unix://..., tcp://..., ssh://..., or a context name
    platforms: tuple[str, ...] = ()  # declared native platforms; () = the engine's own arch
    tls: TLSFiles | None = None
    timeout: int = DEFAULT_TIMEOUT

    @property
    def kind(self) -> str:
        if self.endpoint == LOCAL:
            return LOCAL
        scheme = self.endpoint.split("://", 1)[0] if "://" in self.endpoint else "context"
        return scheme

    def as_json(self) -> dict:
        return {"label": self.label, "endpoint": self.endpoint, "platforms": list(self.platforms),
                "tls": self.tls is not None}


def default_label(endpoint: str) -> str:
    """pi5 for ssh://pi@pi5:22, 10.0.0.5-2375 for tcp://10.0.0.5:2375, the context's name."""
    if endpoint == LOCAL or "://" not in endpoint:
        return endpoint
    parts = urlsplit(endpoint)
    if parts.scheme == "unix":
        return LOCAL if parts.path in ("/var/run/docker.sock", "/run/docker.sock") else Path(parts.path).stem
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", parts.hostname or "").strip("-._") or "host"  # IPv6: no colons
    return host if parts.scheme == "ssh" or not parts.port else f"{host}-{parts.port}"


def check_endpoint(endpoint: str, where: str) -> str:
    if endpoint == LOCAL:
        return endpoint
    if "://" in endpoint:
        scheme, rest = endpoint.split("://", 1)
        if scheme not in SCHEMES:
            raise ConfigError(f"{where}: {endpoint!r}: unknown scheme {scheme}://: use unix://, "
                              "tcp://, ssh://, a Docker context name or 'local'")
        if not rest.strip("/"):
            raise ConfigError(f"{where}: {endpoint!r} names no address: e.g. tcp://10.0.0.5:2376")
        if scheme != "unix":
            try:
                parts = urlsplit(endpoint)
                parts.port  # noqa: B018 - raises ValueError when the port is not a number
            except ValueError:
                raise ConfigError(f"{where}: {endpoint!r}: the port is not a number: "
                                  "e.g. tcp://10.0.0.5:2376 (options follow a comma: ,tls=DIR)") from None
            if not parts.hostname:
                raise ConfigError(f"{where}: {endpoint!r} names no host: e.g. {scheme}://10.0.0.5"
                                  + (":2376" if scheme == "tcp" else ""))
        return endpoint
    if not _LABEL.match(endpoint):
        raise ConfigError(f"{where}: {endpoint!r} is neither an endpoint (unix://, tcp://, ssh://) "
                          "nor a Docker context name: see gobuild bench --help")
    return endpoint


def _tls(values: Mapping[str, str], where: str) -> TLSFiles | None:
    folder = values.get("tls")
    if folder:
        base = Path(str(folder)).expanduser()
        files = {"ca": base / "ca.pem", "cert": base / "cert.pem", "key": base / "key.pem"}
    elif any(values.get(k) for k in ("tlscacert", "tlscert", "tlskey")):
        files = {"ca": values.get("tlscacert"), "cert": values.get("tlscert"), "key": values.get("tlskey")}
        if not all(files.values()):
            raise ConfigError(f"{where}: TLS needs tlscacert=, tlscert= and tlskey= (or tls=DIR)")
        files = {k: Path(str(v)).expanduser() for k, v in files.items()}
    else:
        return None
    for path in files.values():
        if not path.is_file():
            raise ConfigError(f"{where}: no TLS file {path}: give the folder holding ca.pem, "
                              "cert.pem and key.pem (docker's DOCKER_CERT_PATH layout)")
    folder = files["ca"].parent
    if files != {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}:
        raise ConfigError(f"{where}: the docker CLI and buildx take TLS files as one folder: put them "
                          "in one as ca.pem, cert.pem and key.pem and give tls=DIR")
    return TLSFiles(**files)


def from_mapping(values: Mapping, where: str) -> Host:
    """A host from keys (the long --host form, or a mapping in gobuild.yaml)."""
    unknown = sorted(set(values) - set(_KEYS) - {"endpoint"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}: use {', '.join(_KEYS)}")
    url = values.get("url") or values.get("endpoint")
    if not url:
        raise ConfigError(f"{where}: no url: e.g. url=ssh://pi@pi5.local")
    endpoint = check_endpoint(str(url), where)
    label = str(values.get("label") or default_label(endpoint))
    if not _LABEL.match(label):
        raise ConfigError(f"{where}: label {label!r}: use letters, digits, '.', '_' and '-'")
    platforms = values.get("platforms") or ()
    if isinstance(platforms, str):
        platforms = [p for p in re.split(r"[+ ]", platforms) if p]
    try:
        platforms = tuple(dict.fromkeys(parse_platform(str(p)) for p in platforms))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    timeout = values.get("timeout", DEFAULT_TIMEOUT)
    try:
        timeout = int(timeout)
        if timeout <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: timeout={timeout!r}: give whole seconds, e.g. timeout=30") from None
    if endpoint.startswith(("unix://", "ssh://")) or endpoint == LOCAL:
        tls = None
        if any(values.get(k) for k in ("tls", "tlscacert", "tlscert", "tlskey")):
            raise ConfigError(f"{where}: TLS files go with tcp:// endpoints only")
    else:
        tls = _tls(values, where)
    return Host(label=label, endpoint=endpoint, platforms=platforms, tls=tls, timeout=timeout)


def parse(text: str) -> Host:
    """One --host value (pure but for checking TLS files exist)."""
    where = f"--host {text}"
    text = text.strip()
    if not text:
        raise ConfigError("--host '': give an endpoint, e.g. --host ssh://pi@pi5.local")
    head, *rest = text.split(",")
    pairs: dict[str, str] = {}
    key = head.partition("=")[0].strip()
    if "=" in head and key in _KEYS + ("endpoint",) and "://" not in key and any(
            item.strip().startswith(("url=", "endpoint=")) for item in [head, *rest]):
        rest = [head, *rest]  # the long form: every item is KEY=VALUE
    else:  # ENDPOINT or LABEL=ENDPOINT, then ,KEY=VALUE options
        label, sep, endpoint = head.partition("=")
        if sep and "://" not in label:
            pairs.update(label=label.strip(), url=endpoint.strip())
        else:
            pairs["url"] = head
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{where}: {item!r} is not KEY=VALUE: "
                              "e.g. --host pi5=tcp://10.0.0.7:2376,tls=~/.docker/pi5")
        if key.strip() in pairs:
            raise ConfigError(f"{where}: {key.strip()}= given twice: give it once")
        pairs[key.strip()] = value.strip()
    return from_mapping(pairs, where)


def load_config(path: Path) -> list[Host]:
    """The hosts: section of a gobuild.yaml (none: [])."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}): give a readable --config FILE") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML ({str(exc).splitlines()[0]}): fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a hosts: list")
    entries = data.get("hosts") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: hosts: must be a list of endpoints or mappings (label, url, platforms)")
    hosts = []
    for n, entry in enumerate(entries, 1):
        where = f"{path}: hosts[{n}]"
        if isinstance(entry, str):
            hosts.append(from_mapping({"url": entry}, where) if "=" not in entry
                         else parse(entry))
        elif isinstance(entry, dict):
            hosts.append(from_mapping(entry, where))
        else:
            raise ConfigError(f"{where}: expected an endpoint or a mapping, got {entry!r}")
    return hosts


def resolve(specs: Iterable[str], config: Path | None, beside: Path | None) -> tuple[Host, ...]:
    """--host values win; else the hosts: of --config, else of gobuild.yaml in beside (the
    matrix's folder). () means: no fleet, the one engine gobuild always used."""
    hosts = [parse(s) for s in specs]
    if not hosts:
        path = config or (beside / CONFIG_NAME if beside else None)
        if path is not None and (config is not None or path.is_file()):
            hosts = load_config(path)
    labels = [h.label for h in hosts]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f"host label(s) {', '.join(twice)} given twice: name each host "
                          "(--host LABEL=ENDPOINT)")
    return tuple(hosts)


class _KeepAliveAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kw):
        kw["socket_options"] = [*HTTPConnection.default_socket_options, *KEEPALIVE]
        super().init_poolmanager(*args, **kw)


def context_tls(ctx) -> docker.tls.TLSConfig | None:
    """A context's TLS as the docker CLI reads it: any of ca.pem, cert.pem and key.pem (docker-py
    loads it only when all three are there), and its SkipTLSVerify."""
    folder = Path(ctx.tls_path or "") / "docker"
    if not ctx.tls_path or not folder.is_dir():
        return None
    found = {kind: next((str(f) for f in sorted(folder.iterdir()) if f.name.startswith(kind)), None)
             for kind in ("ca", "cert", "key")}
    if not any(found.values()):
        return None
    if bool(found["cert"]) != bool(found["key"]):
        raise ConfigError(f"Docker context {ctx.Name!r} has a client {'certificate' if found['cert'] else 'key'} "
                          "without its pair: docker context update it with both cert= and key=")
    verify = not (ctx.endpoints.get("docker") or {}).get("SkipTLSVerify", False)
    return docker.tls.TLSConfig(client_cert=(found["cert"], found["key"]) if found["cert"] else None,
                                ca_cert=found["ca"] if verify else None, verify=verify)


def _context_endpoint(name: str) -> tuple[str, docker.tls.TLSConfig | None]:
    from docker.context import ContextAPI

    try:
        ctx = ContextAPI.get_context(name)
    except docker.errors.DockerException as exc:
        raise ConfigError(f"Docker context {name!r} cannot be read ({exc}): see docker context ls") from None
    if ctx is None:
        raise ConfigError(f"no Docker context {name!r}: see docker context ls, or give an endpoint "
                          "(ssh://user@host, tcp://host:2376)")
    return ctx.Host or "unix:///var/run/docker.sock", context_tls(ctx)


def endpoint_url(host: Host) -> str | None:
    """The address the host's engine is at: a context's own, DOCKER_HOST for local (None: the
    local socket)."""
    if host.endpoint == LOCAL:
        return os.environ.get("DOCKER_HOST")
    if host.kind == "context":
        return _context_endpoint(host.endpoint)[0]
    return host.endpoint


def make_client(host: Host, environ: Mapping[str, str] | None = None,
                version: str | None = None) -> docker.DockerClient:
    """The host's client (ConfigError for a context that cannot be read); with version, built
    without asking the engine anything (docker-py otherwise asks for its API version first).
    tcp:// without tls= takes DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker CLI does."""
    if host.endpoint == LOCAL:
        return engine.client()
    endpoint, tls = host.endpoint, None
    if host.kind == "context":
        endpoint, tls = _context_endpoint(endpoint)
    elif host.tls is not None:
        tls = docker.tls.TLSConfig(client_cert=(str(host.tls.cert), str(host.tls.key)),
                                   ca_cert=str(host.tls.ca), verify=True)
    elif endpoint.startswith("tcp://"):
        env = dict(environ if environ is not None else os.environ)
        try:
            tls = docker.utils.kwargs_from_env(environment=env).get("tls")
        except docker.errors.TLSParameterError:
            raise ConfigError(f"host {host.label}: DOCKER_TLS_VERIFY/DOCKER_CERT_PATH ask for TLS but "
                              f"{env.get('DOCKER_CERT_PATH') or '~/.docker'} lacks ca.pem, cert.pem or "
                              "key.pem: fix DOCKER_CERT_PATH, or give tls=DIR") from None
    kw: dict = {"base_url": endpoint, "timeout": host.timeout, **({"version": version} if version else {})}
    if endpoint.startswith("ssh://"):
        kw["use_ssh_client"] = True  # the ssh client: the user's keys, agent and ~/.ssh/config
    if tls is not None:
        kw["tls"] = tls  # docker-py then speaks https:// to a tcp:// address
    engine_client = docker.DockerClient(**kw)
    if endpoint.startswith("tcp://"):
        for prefix in ("http://", "https://"):
            engine_client.api.mount(prefix, _KeepAliveAdapter())
    return engine_client


def client(host: Host) -> docker.DockerClient:
    """A client of the host's engine (EngineError when it does not answer)."""
    try:
        engine_client = make_client(host)
        if host.endpoint != LOCAL:
            engine_client.ping()
        return engine_client
    except EngineError as exc:
        raise EngineError(f"host {host.label}: {exc.message}") from None
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise EngineError(f"host {host.label} ({host.endpoint}) does not answer "
                          f"({reason(exc)}): check the address, the engine and the link "
                          f"(gobuild doctor --host {host.endpoint})") from None


def reason(exc: BaseException) -> str:
    """A short why for a failed engine call (requests nests the real cause deep)."""
    text = str(exc)
    for known in ("Connection refused", "timed out", "No route to host", "Name or service not known",
                  "Connection reset", "Network is unreachable", "Permission denied",
                  "Connection aborted", "Max retries exceeded"):
        if known.lower() in text.lower():
            return known.lower()
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


@dataclass(frozen=True, kw_only=True)
class Reached:
    """A host whose engine answered, with its facts; or why it did not."""

    host: Host
    client: docker.DockerClient | None = field(default=None, compare=False)
    facts: engine.EngineFacts | None = None
    error: str | None = None
    engine_id: str = ""  # the engine's own ID (docker info): one engine named twice is one host

    @property
    def ok(self) -> bool:
        return self.client is not None

    def native(self) -> tuple[str, ...]:
        """The platforms this host builds and runs natively: as declared, else its engine's."""
        if self.host.platforms:
            return self.host.platforms
        return (self.facts.platform,) if self.facts else ()


def reach(host: Host) -> Reached:
    try:
        engine_client = client(host)
        info_id = str(engine_client.info().get("ID") or "")
        return Reached(host=host, client=engine_client, facts=engine.facts(engine_client), engine_id=info_id)
    except (EngineError, ConfigError) as exc:  # ConfigError: a context that cannot be read
        return Reached(host=host, error=exc.message)
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        return Reached(host=host, error=f"host {host.label} ({host.endpoint}) stopped answering "
                                        f"({reason(exc)})")


def reach_all(hosts: Iterable[Host], warn: Callable[[str], None] | None = None) -> list[Reached]:
    """Every host asked at once (a dead host costs its timeout, not the sum of them); a host
    whose engine is one already named (same engine ID) is left out, with a warning: two
    labels for one engine would run two measured runs on it at once."""
    from concurrent.futures import ThreadPoolExecutor

    hosts = list(hosts)
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        reached = list(pool.map(reach, hosts))
    return dedupe(reached, warn or (lambda line: click.echo(f"warning: {line}", err=True)))


def dedupe(reached: list[Reached], warn: Callable[[str], None]) -> list[Reached]:
    """The hosts, each engine once (the first label naming it is kept)."""
    first: dict[str, str] = {}
    kept = []
    for r in reached:
        if r.ok and r.engine_id and r.engine_id in first:
            warn(f"host {r.host.label} ({r.host.endpoint}) is the engine of host {first[r.engine_id]} "
                 f"(engine ID {r.engine_id[:12]}): left out, one engine runs one measured run at a time")
            continue
        if r.ok and r.engine_id:
            first[r.engine_id] = r.host.label
        kept.append(r)
    return kept
