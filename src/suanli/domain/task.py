"""A task: what a tenant brings besides its command — variables, a setup script, paths in its work
folder, an array of indices, constraints on the pool. Pure parsing and checks, shared by the API,
the CLI's task file and the engine."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import InvalidInput

MAX_ARRAY_SIZE = 10_000
MAX_ENV = 200
MAX_ENV_VALUE = 100_000
MAX_SCRIPT = 100_000
MAX_PATHS = 100
ARRAY_INDEX_VAR = "SUANLI_ARRAY_INDEX"

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Variables suanli (or the sandbox) sets itself: a job may not replace them.
RESERVED_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "LD_PRELOAD",
                          "LD_LIBRARY_PATH", "LD_AUDIT", ARRAY_INDEX_VAR})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
ARCHES = frozenset({"x86_64", "aarch64", "sw_64", "loongarch64", "riscv64", "ppc64le"})


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """`0-99%10`: indices 0..99, at most 10 placed at once. Also `1,3,5-7` and steps `0-20:5`."""

    indices: tuple[int, ...]
    max_running: int | None = None
    text: str = ""


def parse_array(text: str, *, field_name: str = "array") -> ArraySpec:
    """Slurm's `--array` syntax; a clear error naming what is wrong."""
    raw = str(text).strip()
    body, _, limit = raw.partition("%")
    max_running: int | None = None
    if limit:
        if not limit.isdigit() or int(limit) < 1:
            raise InvalidInput(f"{field_name}: the limit after % must be a positive whole number, "
                               f"not {limit!r}", field=field_name)
        max_running = int(limit)
    indices: set[int] = set()
    for part in body.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise InvalidInput(f"{field_name}: {part!r} is not an index or a range like 0-99, "
                               f"0-99%10 or 1,3,5-7", field=field_name)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if hi < lo or step < 1:
            raise InvalidInput(f"{field_name}: range {part!r} is empty", field=field_name)
        if hi >= 1_000_000:
            raise InvalidInput(f"{field_name}: indices go up to 999999", field=field_name)
        if (hi - lo) // step + 1 + len(indices) > MAX_ARRAY_SIZE:
            raise InvalidInput(f"{field_name}: at most {MAX_ARRAY_SIZE} tasks in one array",
                               field=field_name)
        indices.update(range(lo, hi + 1, step))
    return ArraySpec(tuple(sorted(indices)), max_running, raw)


def parse_walltime(value: object, *, field_name: str = "walltime") -> int:
    """Seconds from an int, `90s`/`30m`/`2h`/`1d`, or Slurm's `MM`, `MM:SS`, `HH:MM:SS`,
    `D-HH`, `D-HH:MM`, `D-HH:MM:SS`."""
    if isinstance(value, bool):
        raise InvalidInput(f"{field_name}: {value!r} is not a duration", field=field_name)
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower()
        unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
        slurm = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if unit:
            seconds = int(float(unit.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[
                unit.group(2)])
        elif slurm:
            days, a, b, c = slurm.groups()
            parts = [int(x) for x in (a, b, c) if x is not None]
            if days is not None:  # D-HH[:MM[:SS]]
                parts += [0] * (3 - len(parts))
                h, mi, se = parts
                seconds = int(days) * 86400 + h * 3600 + mi * 60 + se
            elif len(parts) == 1:  # minutes
                seconds = parts[0] * 60
            elif len(parts) == 2:  # MM:SS
                seconds = parts[0] * 60 + parts[1]
            else:
                seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
        else:
            raise InvalidInput(f"{field_name}: {value!r} is not a duration (e.g. 3600, 30m, 2h, "
                               f"01:00:00, 1-12:00:00)", field=field_name)
    if seconds < 1:
        raise InvalidInput(f"{field_name}: must be at least 1 second", field=field_name)
    return seconds


def check_env(env: dict[str, str], *, field_name: str = "env") -> dict[str, str]:
    if not isinstance(env, dict):
        raise InvalidInput(f"{field_name}: a map of NAME: value", field=field_name)
    if len(env) > MAX_ENV:
        raise InvalidInput(f"{field_name}: at most {MAX_ENV} variables", field=field_name)
    out: dict[str, str] = {}
    for k, v in env.items():
        if not isinstance(k, str) or not _ENV_KEY.fullmatch(k):
            raise InvalidInput(f"{field_name}: {k!r} is not a variable name (letters, digits, _)",
                               field=field_name)
        if k in RESERVED_ENV:
            raise InvalidInput(f"{field_name}: {k} is set by suanli and cannot be given",
                               field=field_name)
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise InvalidInput(f"{field_name}: {k}'s value must be text or a number",
                               field=field_name)
        text = str(v)
        if "\x00" in text or len(text) > MAX_ENV_VALUE:
            raise InvalidInput(f"{field_name}: {k}'s value has a NUL or is over "
                               f"{MAX_ENV_VALUE} characters", field=field_name)
        out[k] = text
    return out


def check_relative_path(path: str, *, field_name: str, glob: bool = False) -> str:
    """A path inside the work folder: relative, no `..`, no NUL. "" or "." is the folder."""
    if not isinstance(path, str) or "\x00" in path or len(path) > 1000:
        raise InvalidInput(f"{field_name}: {path!r} is not a path", field=field_name)
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        raise InvalidInput(f"{field_name}: {path!r} must stay inside the work folder (relative, "
                           f"no '..')", field=field_name)
    if glob and "**" in path.replace("/**/", "/").removeprefix("**/").removesuffix("/**"):
        raise InvalidInput(f"{field_name}: '**' only as a whole path part", field=field_name)
    text = str(p)
    return "" if text == "." else text


def check_script(script: str | None, *, field_name: str) -> str | None:
    if script is None:
        return None
    if not isinstance(script, str):
        raise InvalidInput(f"{field_name}: a shell script (text)", field=field_name)
    if "\x00" in script or len(script) > MAX_SCRIPT:
        raise InvalidInput(f"{field_name}: has a NUL or is over {MAX_SCRIPT} characters",
                           field=field_name)
    return script if script.strip() else None


_PLACE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}(/[a-z0-9][a-z0-9-]{1,62})?")
MAX_PLACES = 50


@dataclass(frozen=True, slots=True)
class Constraints:
    """What a pool must offer: its CPU architecture and every listed feature; and where the job
    may run: only at `centers`, never at `exclude_centers` (each a center's slug, or
    `center/pool` for one pool of it)."""

    arch: str | None = None
    features: tuple[str, ...] = ()
    centers: tuple[str, ...] = ()
    exclude_centers: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.arch:
            out["arch"] = self.arch
        if self.features:
            out["features"] = list(self.features)
        if self.centers:
            out["centers"] = list(self.centers)
        if self.exclude_centers:
            out["exclude_centers"] = list(self.exclude_centers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> Constraints:
        data = data or {}
        arch = data.get("arch")

        def names(key: str) -> tuple[str, ...]:
            items = data.get(key) or []
            return tuple(str(f) for f in items) if isinstance(items, (list, tuple)) else ()

        return cls(str(arch) if arch else None, names("features"), names("centers"),
                   names("exclude_centers"))

    def missing(self, arch: str, features: frozenset[str] | set[str] | tuple[str, ...]) -> list[str]:
        """Why a pool with `arch` and `features` does not satisfy these (empty: it does)."""
        why = []
        if self.arch and self.arch != arch:
            why.append(f"arch {arch}, not {self.arch}")
        have = set(features)
        lacking = [f for f in self.features if f not in have]
        if lacking:
            why.append("lacks feature " + ", ".join(lacking))
        return why

    def kept_from(self, center: str, pool: str) -> list[str]:
        """Why the job may not run on pool `pool` of center `center` (slugs; empty: it may)."""
        here = (center, f"{center}/{pool}")
        if self.centers and not any(c in here for c in self.centers):
            return [f"not one of the job's centers ({', '.join(self.centers)})"]
        if any(c in here for c in self.exclude_centers):
            return [f"excluded by the job (exclude_centers: {', '.join(self.exclude_centers)})"]
        return []


def check_places(data: object, *, field_name: str) -> tuple[str, ...]:
    """A job's `centers` or `exclude_centers`: center slugs or `center/pool`, at most
    MAX_PLACES (a single string is a list of one)."""
    if data is None:
        return ()
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or len(data) > MAX_PLACES:
        raise InvalidInput(f"{field_name}: a list of up to {MAX_PLACES} centers (slug, or "
                           "center/pool)", field=field_name)
    for item in data:
        if not isinstance(item, str) or not _PLACE.fullmatch(item):
            raise InvalidInput(f"{field_name}: {item!r} is not a center (its slug, e.g. qd-ai) "
                               "or a pool (center/pool, e.g. qd-ai/ascend-910b)", field=field_name)
    return tuple(dict.fromkeys(data))


def check_constraints(data: object, *, field_name: str = "constraints") -> Constraints:
    if data is None:
        return Constraints()
    if not isinstance(data, dict):
        raise InvalidInput(f"{field_name}: a map with arch and/or features", field=field_name)
    known = {"arch", "features", "centers", "exclude_centers"}
    unknown = set(data) - known
    if unknown:
        raise InvalidInput(f"{field_name}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                           f"(known: {', '.join(sorted(known))})", field=field_name)
    arch = data.get("arch")
    if arch is not None and (not isinstance(arch, str) or arch not in ARCHES):
        raise InvalidInput(f"{field_name}.arch: {arch!r} is not one of "
                           f"{', '.join(sorted(ARCHES))}", field=f"{field_name}.arch")
    feats = data.get("features") or []
    if isinstance(feats, str):
        feats = [feats]
    if not isinstance(feats, list) or len(feats) > 50:
        raise InvalidInput(f"{field_name}.features: a list of up to 50 names",
                           field=f"{field_name}.features")
    for f in feats:
        if not isinstance(f, str) or not _NAME.fullmatch(f):
            raise InvalidInput(f"{field_name}.features: {f!r} is not a feature name (e.g. "
                               f"cuda-12.4)", field=f"{field_name}.features")
    centers = check_places(data.get("centers"), field_name="centers")
    excluded = check_places(data.get("exclude_centers"), field_name="exclude_centers")
    both = [c for c in centers if c in excluded]
    if both:
        raise InvalidInput(f"centers: {', '.join(both)} is both required and excluded",
                           field="exclude_centers")
    return Constraints(arch, tuple(dict.fromkeys(feats)), centers, excluded)


def check_name(name: object, *, field_name: str) -> str:
    """An environment, feature or dataset name: letters, digits, `._+-`, at most 64."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"{field_name}: {name!r} is not a name (letters, digits, . _ + -)",
                           field=field_name)
    return name


@dataclass(frozen=True, slots=True)
class Script:
    """The shell script a task runs at the center: the pool's environment activation, the
    job's setup, then its command (`run` or the argument list), stopping at the first failure
    of the first two."""

    command: list[str]
    setup: str | None = None
    activation: str | None = None

    def argv(self) -> list[str]:
        if not self.setup and not self.activation:
            return list(self.command)
        parts = ["set -e"]
        if self.activation:
            parts.append(self.activation)
        if self.setup:
            parts.append(self.setup)
        parts.append("set +e")
        parts.append("exec " + shlex.join(self.command))
        return ["/bin/bash", "-c", "\n".join(parts)]
