#!/usr/bin/env bash
# Installs the dronelake agent on a Debian or Raspberry Pi OS gateway (amd64, arm64, armhf)
# as the systemd service dronelake-agent. Run it as root from a copy of deploy/gateway/ (it
# installs dronelake-agent.service and agent.example.yaml from beside itself). Safe to run
# again: it upgrades dronelake, replaces the unit, and never touches an existing config.
set -euo pipefail

PACKAGE_VERSION=0.1.0
PREFIX=/opt/dronelake
CONFIG_DIR=/etc/dronelake
STATE_DIR=/var/lib/dronelake
UNIT_NAME=dronelake-agent.service
UNIT_PATH=/etc/systemd/system/${UNIT_NAME}
SERVICE_USER=dronelake
NODE_MAJOR_MIN=20
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<USAGE
Usage: install.sh [--version V] [--no-start] [TARBALL]

Install the dronelake agent as the systemd service ${UNIT_NAME}. Run as root.

  TARBALL        install dronelake from this file (the output of 'npm pack') instead of npm
  --version V    the dronelake version to install from npm (default: ${PACKAGE_VERSION})
  --no-start     install and enable the service, but do not start or restart it
  -h, --help     print this help and exit

What it does, each step skipped when already done:
  - Node.js >= ${NODE_MAJOR_MIN}: from the distribution's nodejs package when that is new enough;
    otherwise it stops and tells you how to get one;
  - dronelake into ${PREFIX} (npm install -g --prefix ${PREFIX}), linked as /usr/local/bin/dronelake;
  - the system user ${SERVICE_USER}; the state directory ${STATE_DIR} (spool in ${STATE_DIR}/spool);
  - ${CONFIG_DIR}/agent.yaml from agent.example.yaml, and ${CONFIG_DIR}/agent.env for
    DRONELAKE_AGENT_PASSWORD, only when absent: an existing file is never overwritten;
  - ${UNIT_PATH}, then systemctl daemon-reload and enable --now. A config created just now
    is the example's, so the service is then enabled but not started: edit it, then
    'systemctl start ${UNIT_NAME}'.
USAGE
}

die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}
say() { printf '==> %s\n' "$*"; }

START=1
TARBALL=
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --version)
      [[ $# -ge 2 ]] || die "--version needs a value"
      PACKAGE_VERSION=$2
      shift 2
      ;;
    --version=*)
      PACKAGE_VERSION=${1#--version=}
      shift
      ;;
    --no-start)
      START=0
      shift
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [[ -z $TARBALL ]] || die "one tarball at most (see --help)"
      TARBALL=$1
      shift
      ;;
  esac
done

[[ ${EUID} -eq 0 ]] || die "run as root (sudo $0 ...)"
command -v systemctl >/dev/null 2>&1 || die "systemctl not found: this installs a systemd service"
[[ -f ${SCRIPT_DIR}/${UNIT_NAME} ]] || die "${SCRIPT_DIR}/${UNIT_NAME} not found: run from a copy of deploy/gateway/"
[[ -f ${SCRIPT_DIR}/agent.example.yaml ]] || die "${SCRIPT_DIR}/agent.example.yaml not found: run from a copy of deploy/gateway/"
if [[ -n $TARBALL ]]; then
  [[ -f $TARBALL ]] || die "no such file: $TARBALL"
  TARBALL=$(cd -- "$(dirname -- "$TARBALL")" && pwd)/$(basename -- "$TARBALL")
fi

# Read in a subshell: /etc/os-release sets VERSION, ID and more, which must not leak in here.
os_ids=$(
  # shellcheck disable=SC1091
  [[ -r /etc/os-release ]] && . /etc/os-release && printf ' %s %s ' "${ID:-}" "${ID_LIKE:-}"
) || true
case $os_ids in
  *" debian "* | *" raspbian "*) ;;
  *) say "warning: this is not Debian or Raspberry Pi OS (/etc/os-release:${os_ids:- none}); going on anyway" ;;
esac
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
case $ARCH in
  amd64 | arm64) ;;
  # DuckDB has no 32-bit ARM build; npm skips it and the agent never loads it.
  armhf) say "armhf: the agent runs; the sink and query (DuckDB) would not on this machine" ;;
  *) say "warning: architecture $ARCH is untested" ;;
esac

# --- Node.js -----------------------------------------------------------------------------------
node_major() {
  command -v node >/dev/null 2>&1 || {
    echo 0
    return
  }
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

if [[ $(node_major) -lt $NODE_MAJOR_MIN ]]; then
  say "Node.js >= ${NODE_MAJOR_MIN} not found; looking at the distribution's nodejs package"
  apt-get update -qq
  # e.g. "20.19.2+dfsg-1" or "1:20.19.2-..."; the major version is the first number after any epoch.
  candidate=$(apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ { print $2 }')
  candidate_major=$(printf '%s' "${candidate:-}" | sed -E 's/^[0-9]+://; s/^([0-9]+).*/\1/')
  if [[ $candidate_major =~ ^[0-9]+$ ]] && [[ $candidate_major -ge $NODE_MAJOR_MIN ]]; then
    say "installing nodejs ${candidate} and npm from apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
  else
    cat >&2 <<NODE
install.sh: this distribution's nodejs is ${candidate:-not available}, and dronelake needs Node.js >= ${NODE_MAJOR_MIN}.
  Debian 13 (trixie) and later ship Node.js 20. On Debian 12 (bookworm) and Raspberry Pi OS
  bookworm, install Node.js 22 from NodeSource's apt repository (see https://github.com/nodesource/distributions),
  or from bookworm-backports if it has one, then run this script again.
NODE
    exit 1
  fi
fi
[[ $(node_major) -ge $NODE_MAJOR_MIN ]] || die "node is $(node --version 2>/dev/null || echo missing) after installing; need >= ${NODE_MAJOR_MIN}"
command -v npm >/dev/null 2>&1 || {
  say "installing npm from apt"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm
}

# --- dronelake ---------------------------------------------------------------------------------
if [[ -n $TARBALL ]]; then
  spec=$TARBALL
else
  spec=dronelake@${PACKAGE_VERSION}
fi
say "installing ${spec} into ${PREFIX}"
install -d -m 0755 "$PREFIX"
npm install --global --prefix "$PREFIX" --omit=dev --no-audit --no-fund "$spec"
[[ -x ${PREFIX}/bin/dronelake ]] || die "${PREFIX}/bin/dronelake is missing after npm install"
ln -sfn "${PREFIX}/bin/dronelake" /usr/local/bin/dronelake
say "dronelake $("${PREFIX}/bin/dronelake" --version)"

# --- user, directories, config -----------------------------------------------------------------
if ! getent passwd "$SERVICE_USER" >/dev/null; then
  say "creating the system user ${SERVICE_USER}"
  useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
# systemd creates the state directory (StateDirectory=); make it now too, for a first look.
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
install -d -m 0750 -o root -g "$SERVICE_USER" "$CONFIG_DIR"

fresh_config=0
if [[ ! -e ${CONFIG_DIR}/agent.yaml ]]; then
  say "creating ${CONFIG_DIR}/agent.yaml from the example: edit it"
  install -m 0640 -o root -g "$SERVICE_USER" "${SCRIPT_DIR}/agent.example.yaml" "${CONFIG_DIR}/agent.yaml"
  fresh_config=1
else
  say "keeping ${CONFIG_DIR}/agent.yaml"
fi
if [[ ! -e ${CONFIG_DIR}/agent.env ]]; then
  say "creating ${CONFIG_DIR}/agent.env (root only): put DRONELAKE_AGENT_PASSWORD=... in it"
  (
    umask 077
    printf '%s\n' '# The secret that "dronelake broker identity add" printed for this gateway (read by systemd as root).' \
      '#DRONELAKE_AGENT_PASSWORD=' >"${CONFIG_DIR}/agent.env"
  )
  chmod 0600 "${CONFIG_DIR}/agent.env"
else
  say "keeping ${CONFIG_DIR}/agent.env"
fi

# --- the service -------------------------------------------------------------------------------
say "installing ${UNIT_PATH}"
install -m 0644 "${SCRIPT_DIR}/${UNIT_NAME}" "$UNIT_PATH"
systemctl daemon-reload
if [[ $START -eq 0 || $fresh_config -eq 1 ]]; then
  systemctl enable "$UNIT_NAME"
  if [[ $fresh_config -eq 1 ]]; then
    say "enabled, not started: edit ${CONFIG_DIR}/agent.yaml and ${CONFIG_DIR}/agent.env, then: systemctl start ${UNIT_NAME}"
  else
    say "enabled, not started (--no-start)"
  fi
elif systemctl is-active --quiet "$UNIT_NAME"; then
  systemctl enable "$UNIT_NAME"
  systemctl restart "$UNIT_NAME"
  say "restarted ${UNIT_NAME} on the new version"
else
  systemctl enable --now "$UNIT_NAME"
  say "started ${UNIT_NAME}"
fi
say "check it with: systemctl status ${UNIT_NAME}; journalctl -u ${UNIT_NAME} -f"
