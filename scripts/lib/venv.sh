# shellcheck shell=bash
# Shared by scripts/test and scripts/run: source it, then call rc_venv_activate.
#
# The venv lives OUTSIDE the clone, keyed by Python version and the hash of
# pyproject.toml and constraints.txt, so a fresh CI clone (or a second worktree) reuses it:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/recovery-coach/venv-py311-<sha256[:12]>
# Dependencies (.[test], pinned by constraints.txt) are installed only when the venv is
# new; a marker file
# written after a successful install tells a complete venv from an interrupted
# one. The project itself is always reinstalled (editable, no deps, no build
# isolation: about a second) because the clone path changes between CI runs.

rc_repo_root() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
  printf '%s\n' "$here"
}

rc_log() { printf '==> %s\n' "$*" >&2; }

rc_as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    rc_log "need root for: $* (not root and no sudo)"
    return 1
  fi
}

# Install mosquitto + mosquitto_passwd if either is missing (Debian/Ubuntu).
rc_ensure_mosquitto() {
  if [[ -x /usr/sbin/mosquitto || -n "$(command -v mosquitto || true)" ]] \
    && command -v mosquitto_passwd >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    rc_log "mosquitto is missing and apt-get is not available: install mosquitto and mosquitto-clients"
    return 1
  fi
  rc_log "installing mosquitto (apt-get)"
  rc_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  rc_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends mosquitto mosquitto-clients </dev/null
}

# Create (if needed) and activate the cached venv for the repo at $1 (default:
# this checkout). Sets RC_VENV. Python: $RC_PYTHON or python3.
rc_venv_activate() {
  local root="${1:-$(rc_repo_root)}"
  local py="${RC_PYTHON:-python3}"
  local pyver hash cache venv marker lock
  if ! command -v "$py" >/dev/null 2>&1; then
    rc_log "$py not found (set RC_PYTHON to a Python >= 3.11)"
    return 1
  fi
  pyver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
  hash="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-12)"
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/recovery-coach"
  venv="$cache/venv-py${pyver}-${hash}"
  marker="$venv/.rc-deps-installed"
  lock="$cache/.venv-py${pyver}-${hash}.lock"
  mkdir -p "$cache"

  # Serialise concurrent runs (two CI jobs on one machine) on the same venv.
  exec {rc_lock_fd}>"$lock"
  if command -v flock >/dev/null 2>&1; then
    flock "$rc_lock_fd"
  fi

  if [[ ! -f "$marker" ]]; then
    rc_log "creating venv $venv (first run for this pyproject.toml; later runs reuse it)"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip 'setuptools>=68' wheel
    "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root[test]"
    date -u +%FT%TZ >"$marker"
  fi
  # Fast: no dependency resolution and no isolated build env to download.
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" \
    || { rc_log "editable install of $root failed"; return 1; }

  exec {rc_lock_fd}>&-
  # shellcheck disable=SC1091
  VIRTUAL_ENV_DISABLE_PROMPT=1 source "$venv/bin/activate"
  export RC_VENV="$venv"
}
