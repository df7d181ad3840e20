#!/usr/bin/env bash
# Checks a packed charm the way Juju and charmcraft will see it:
#   - zip entries and their Unix modes (dispatch 0755, everything else 0644), CRCs;
#   - dispatch is a static x86-64 ELF (no PT_INTERP, no DT_NEEDED);
#   - the YAML files parse; metadata has name/summary/description; config.yaml has the
#     `channel` and `port` options; manifest.yaml has bases;
#   - `charmcraft analyse` (charmcraft 4.5.0 from PyPI, in a fresh venv) reports nothing but
#     the expected `language`/`framework` attributes `unknown` (no LXD needed: it lints the
#     unzipped charm on the host).
#
# usage: bash .ci/check-charm.sh <file.charm>
# env:   CHARMCRAFT_VENV=<dir>  use (or create) the venv there instead of a throw-away one
set -euo pipefail

CHARMCRAFT_VERSION=4.5.0

charm=${1:?usage: bash .ci/check-charm.sh <file.charm>}
[[ -f $charm ]] || { echo "check-charm: $charm: no such file" >&2; exit 1; }
charm=$(cd "$(dirname "$charm")" && pwd)/$(basename "$charm")

work=$(mktemp -d "${TMPDIR:-/tmp}/check-charm.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- a venv with charmcraft (and so PyYAML) --------------------------------------------------
pick_python() {
    local py
    for py in python3.11 python3.12 python3.13 python3; do
        if command -v "$py" >/dev/null &&
            "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            echo "$py"
            return
        fi
    done
    echo "check-charm: charmcraft $CHARMCRAFT_VERSION needs Python >= 3.10; none found" >&2
    return 1
}

venv=${CHARMCRAFT_VENV:-$work/venv}
if [[ ! -x $venv/bin/charmcraft ]]; then
    python=$(pick_python)
    echo "--- creating a venv with charmcraft==$CHARMCRAFT_VERSION ($($python --version), $venv)"
    t0=$SECONDS
    if ! "$python" -m venv "$venv"; then
        # Debian's python3.x without ensurepip: the venv module lives in python3.x-venv.
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq
            apt-get install -y -qq "$(basename "$python")-venv" || apt-get install -y -qq python3-venv
            rm -rf "$venv"
            "$python" -m venv "$venv"
        else
            echo "check-charm: '$python -m venv' failed (install python3-venv)" >&2
            exit 1
        fi
    fi
    "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --quiet \
        "charmcraft==$CHARMCRAFT_VERSION"
    echo "venv ready in $((SECONDS - t0))s"
fi
"$venv/bin/charmcraft" version 2>/dev/null

# --- structure, modes, ELF, YAML ------------------------------------------------------------------
echo "--- checking $charm"
"$venv/bin/python" - "$charm" <<'PY'
import stat
import struct
import sys
import zipfile

import yaml

path = sys.argv[1]
errors = []
z = zipfile.ZipFile(path)
infos = z.infolist()
names = [i.filename for i in infos]

required = {"dispatch", "metadata.yaml", "manifest.yaml", "config.yaml", "README.md", "LICENSE"}
optional = {"actions.yaml"}
if len(set(names)) != len(names):
    errors.append(f"duplicate entries: {names}")
if missing := required - set(names):
    errors.append(f"missing entries: {sorted(missing)}")
if extra := set(names) - required - optional:
    errors.append(f"unexpected entries: {sorted(extra)}")
if bad := z.testzip():
    errors.append(f"bad CRC: {bad}")

for i in infos:
    mode = i.external_attr >> 16
    want = 0o755 if i.filename == "dispatch" else 0o644
    print(f"  {stat.filemode(mode)} {oct(stat.S_IMODE(mode))} {i.file_size:>9} {i.filename}")
    if i.create_system != 3:
        errors.append(f"{i.filename}: not created by Unix (create_system {i.create_system})")
    if not stat.S_ISREG(mode) or stat.S_IMODE(mode) != want:
        errors.append(f"{i.filename}: mode {oct(mode)}, want regular file {oct(want)}")


def elf_problem(b: bytes):
    """None if b is a static x86-64 ELF executable, else what is wrong."""
    if b[:4] != b"\x7fELF" or b[4] != 2 or b[5] != 1:
        return "not a 64-bit little-endian ELF file"
    e_type, machine = struct.unpack_from("<HH", b, 0x10)
    if e_type not in (2, 3) or machine != 62:
        return f"not an x86-64 executable (e_type {e_type}, e_machine {machine})"
    phoff, = struct.unpack_from("<Q", b, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
    for n in range(phnum):
        p_type, = struct.unpack_from("<I", b, phoff + n * phentsize)
        off, = struct.unpack_from("<Q", b, phoff + n * phentsize + 0x08)
        size, = struct.unpack_from("<Q", b, phoff + n * phentsize + 0x20)
        if p_type == 3:
            return f"has a program interpreter {b[off:off + size].rstrip(bytes(1))!r}"
        if p_type == 2:
            for d in range(off, off + size, 16):
                tag, = struct.unpack_from("<Q", b, d)
                if tag == 0:
                    break
                if tag == 1:
                    return "needs shared libraries (DT_NEEDED)"
    return None


if "dispatch" in names:
    problem = elf_problem(z.read("dispatch"))
    if problem:
        errors.append(f"dispatch: {problem}")
    else:
        print("  dispatch: static x86-64 ELF, no interpreter, no DT_NEEDED")

docs = {}
for name in names:
    if name.endswith(".yaml"):
        try:
            docs[name] = yaml.safe_load(z.read(name))
        except yaml.YAMLError as e:
            errors.append(f"{name}: not valid YAML: {e}")

md = docs.get("metadata.yaml") or {}
for key in ("name", "summary", "description"):
    if not isinstance(md.get(key), str) or not md[key].strip():
        errors.append(f"metadata.yaml: missing {key}")
options = (docs.get("config.yaml") or {}).get("options") or {}
for opt, ty in (("channel", "string"), ("port", "int")):
    if (options.get(opt) or {}).get("type") != ty:
        errors.append(f"config.yaml: option {opt!r} of type {ty!r} missing")
bases = (docs.get("manifest.yaml") or {}).get("bases") or []
if not bases or not all(
    isinstance(b.get("channel"), str) and "amd64" in b.get("architectures", []) for b in bases
):
    errors.append(f"manifest.yaml: bad bases {bases!r}")
else:
    print("  bases: " + ", ".join(f"{b['name']}@{b['channel']}:{','.join(b['architectures'])}" for b in bases))

for e in errors:
    print(f"check-charm: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

if command -v readelf >/dev/null; then
    echo "--- readelf -lW dispatch (program headers)"
    (cd "$work" && "$venv/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("dispatch", ".")' "$charm")
    readelf -lW "$work/dispatch" | sed -n '/Program Headers/,/^$/p'
    if readelf -lW "$work/dispatch" | grep -q INTERP; then
        echo "check-charm: readelf: dispatch has an INTERP header" >&2
        exit 1
    fi
fi

# --- charmcraft analyse -----------------------------------------------------------------------
echo "--- charmcraft analyse --format=json $(basename "$charm")"
mkdir -p "$work/xdg/run" "$work/analyse"
chmod 700 "$work/xdg/run"
rc=0
(
    cd "$work/analyse" # no charmcraft.yaml around: analyse only looks at the file
    XDG_RUNTIME_DIR=$work/xdg/run XDG_STATE_HOME=$work/xdg/state XDG_CACHE_HOME=$work/xdg/cache \
        XDG_CONFIG_HOME=$work/xdg/config XDG_DATA_HOME=$work/xdg/data \
        "$venv/bin/charmcraft" analyse --format=json "$charm" >"$work/analyse.json" 2>"$work/analyse.err"
) || rc=$?
cat "$work/analyse.json"
if [[ -s $work/analyse.err ]]; then
    echo "(charmcraft stderr:)"
    cat "$work/analyse.err"
fi
"$venv/bin/python" - "$work/analyse.json" "$rc" <<'PY'
import json
import sys

rc = int(sys.argv[2])
text = open(sys.argv[1]).read()
try:
    results = json.loads(text)
except ValueError:
    sys.exit(f"check-charm: charmcraft analyse (exit {rc}) printed no JSON")
# A binary dispatch is neither Python nor ops/reactive: these two attributes are expected
# to be unknown. Every linter must be ok, or nonapplicable (the Python-only ones).
expected_attributes = {"language": "unknown", "framework": "unknown"}
problems = []
for r in results:
    name, result, kind = r.get("name"), r.get("result"), r.get("check_type")
    if kind == "attribute":
        if expected_attributes.get(name) != result:
            problems.append(f"attribute {name}: {result} ({r.get('text')})")
    elif result not in ("ok", "nonapplicable"):
        problems.append(f"{kind} {name}: {result} ({r.get('text')})")
seen = {r.get("name") for r in results}
for name in ("metadata", "juju-config", "juju-actions", "naming-conventions", *expected_attributes):
    if name not in seen:
        problems.append(f"check {name} did not run")
if rc != 0:
    problems.append(f"charmcraft analyse exited {rc}")
for p in problems:
    print(f"check-charm: charmcraft analyse: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"charmcraft analyse: {len(results)} checks, only language/framework unknown: OK")
PY
# --- charmcraft accepts charmcraft.yaml itself --------------------------------------------------
# `charmcraft expand-extensions` loads and validates the project file with charmcraft's own
# models (platforms, parts, config, actions), so the `charmcraft pack` route stays valid too.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
echo "--- charmcraft expand-extensions (validates $repo/charmcraft.yaml)"
(
    cd "$repo"
    XDG_RUNTIME_DIR=$work/xdg/run XDG_STATE_HOME=$work/xdg/state XDG_CACHE_HOME=$work/xdg/cache \
        XDG_CONFIG_HOME=$work/xdg/config XDG_DATA_HOME=$work/xdg/data \
        "$venv/bin/charmcraft" expand-extensions >"$work/expanded.yaml" 2>"$work/expand.err"
) || {
    cat "$work/expand.err" >&2
    echo "check-charm: charmcraft rejects charmcraft.yaml" >&2
    exit 1
}
"$venv/bin/python" - "$work/expanded.yaml" <<'PY'
import sys

import yaml

project = yaml.safe_load(open(sys.argv[1]))
platforms = sorted(project["platforms"])
assert platforms == ["ubuntu@22.04:amd64", "ubuntu@24.04:amd64"], platforms
part = project["parts"]["charm"]
assert part["plugin"] == "rust" and part["organize"] == {"bin/dispatch": "dispatch"}, part
print(f"charmcraft accepts charmcraft.yaml: platforms {', '.join(platforms)}, rust part -> dispatch")
PY
echo "check-charm: OK"
