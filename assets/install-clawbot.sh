#!/usr/bin/env bash
# ClawBot Network: puts this machine on the network.
#
#   curl -fsSL http://HUB:3001/install-clawbot.sh | bash
#   curl -fsSL http://HUB:3001/install-clawbot.sh | bash -s -- --capabilities xcode,gpu
#
# The hub served this script filled in with its address (and, when asked
# for with ?token=, a join token). It never asks a question, so it works
# under a pipe. Options, as flags or environment variables:
#
#   --token T          CLAWBOT_TOKEN         join or agent token
#   --bot-id ID        CLAWBOT_BOT_ID        default clawdbot-<hostname>
#   --name NAME        CLAWBOT_BOT_NAME      default from the OpenClaw SOUL.md
#   --capabilities L   CLAWBOT_CAPABILITIES  comma-separated tags (xcode,gpu)
#   --groups L         CLAWBOT_GROUPS        comma-separated, default clawdbots
#   --hub URL          CLAWBOT_HUB_URL       the hub's http(s) URL
#   --python P         CLAWBOT_PYTHON        python3 to use (3.9 or newer)
#   --no-service       CLAWBOT_NO_SERVICE=1  do not install a LaunchAgent / systemd unit
#   --uninstall                              remove everything this script created
#   --print-launch-agent                     print the macOS LaunchAgent it would install
#
# Re-running upgrades in place and keeps the existing config.json.
set -euo pipefail

HUB_URL="${CLAWBOT_HUB_URL:-@@HUB_URL@@}"
TOKEN="${CLAWBOT_TOKEN:-@@JOIN_TOKEN@@}"
BOT_ID="${CLAWBOT_BOT_ID:-}"
BOT_NAME="${CLAWBOT_BOT_NAME:-}"
CAPABILITIES="${CLAWBOT_CAPABILITIES:-}"
GROUP_LIST="${CLAWBOT_GROUPS:-clawdbots}"
PYTHON="${CLAWBOT_PYTHON:-python3}"
NO_SERVICE="${CLAWBOT_NO_SERVICE:-0}"
UNINSTALL=0
PRINT_LAUNCH_AGENT=0
INSTALL_DIR="$HOME/.clawbot-network"
LAUNCH_AGENT="$HOME/Library/LaunchAgents/network.clawbot.connector.plist"
SYSTEMD_UNIT="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/clawbot-connector.service"

die() { echo "clawbot installer: error: $*" >&2; exit 1; }
say() { echo "==> $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --token) TOKEN="${2:?--token needs a value}"; shift 2 ;;
        --bot-id) BOT_ID="${2:?--bot-id needs a value}"; shift 2 ;;
        --name) BOT_NAME="${2:?--name needs a value}"; shift 2 ;;
        --capabilities) CAPABILITIES="${2:?--capabilities needs a value}"; shift 2 ;;
        --groups) GROUP_LIST="${2:?--groups needs a value}"; shift 2 ;;
        --hub) HUB_URL="${2:?--hub needs a value}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs a value}"; shift 2 ;;
        --no-service) NO_SERVICE=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --print-launch-agent) PRINT_LAUNCH_AGENT=1; shift ;;
        -h|--help) sed -n '2,22p' "$0" 2>/dev/null || true; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
HUB_URL="${HUB_URL%/}"

launch_agent_plist() {
    cat <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>network.clawbot.connector</string>
    <key>ProgramArguments</key>
    <array>
        <string>$INSTALL_DIR/start.sh</string>
    </array>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <true/>
    <key>StandardOutPath</key>
    <string>$INSTALL_DIR/connector.log</string>
    <key>StandardErrorPath</key>
    <string>$INSTALL_DIR/connector.log</string>
</dict>
</plist>
PLIST
}

if [ "$PRINT_LAUNCH_AGENT" = 1 ]; then
    launch_agent_plist
    exit 0
fi

remove_service() {
    if [ -f "$LAUNCH_AGENT" ]; then
        launchctl bootout "gui/$(id -u)" "$LAUNCH_AGENT" 2>/dev/null || true
        rm -f "$LAUNCH_AGENT"
    fi
    if [ -f "$SYSTEMD_UNIT" ]; then
        systemctl --user disable --now clawbot-connector.service 2>/dev/null || true
        rm -f "$SYSTEMD_UNIT"
        systemctl --user daemon-reload 2>/dev/null || true
    fi
}

if [ "$UNINSTALL" = 1 ]; then
    say "Removing the ClawBot connector"
    remove_service
    if [ -x "$INSTALL_DIR/stop.sh" ]; then "$INSTALL_DIR/stop.sh" || true; fi
    rm -rf "$INSTALL_DIR"
    say "Removed $INSTALL_DIR"
    exit 0
fi

case "$HUB_URL" in
    http://*|https://*) ;;
    *) die "the hub URL '$HUB_URL' must start with http:// or https:// (use --hub)" ;;
esac
command -v curl >/dev/null || die "curl is needed"
command -v "$PYTHON" >/dev/null || die "$PYTHON was not found; install Python 3.9 or newer (macOS: xcode-select --install or brew install python)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || die "Python 3.9 or newer is needed; $PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())')"
curl -fsS --max-time 10 "$HUB_URL/api/health" >/dev/null \
    || die "cannot reach the hub at $HUB_URL (is it running, and is the port open?)"

say "Installing into $INSTALL_DIR"
mkdir -p "$INSTALL_DIR"
chmod 700 "$INSTALL_DIR"
if [ ! -x "$INSTALL_DIR/venv/bin/python" ]; then
    "$PYTHON" -m venv "$INSTALL_DIR/venv" \
        || die "could not create a Python venv (on Debian/Ubuntu: apt install python3-venv)"
fi
PIP=("$INSTALL_DIR/venv/bin/python" -m pip --disable-pip-version-check --quiet)

# The connector from the hub's downloads, checked against its SHA256SUMS;
# the package index only when the hub offers no wheel for this machine.
downloads="$(mktemp -d)"
trap 'rm -rf "$downloads"' EXIT
installed=0
if curl -fsS --max-time 30 "$HUB_URL/downloads/SHA256SUMS" -o "$downloads/SHA256SUMS" \
        && [ -s "$downloads/SHA256SUMS" ]; then
    while read -r sum name; do
        case "$name" in *[!A-Za-z0-9._+-]*|"") die "unexpected file name '$name' in SHA256SUMS" ;; esac
        curl -fsS --max-time 120 "$HUB_URL/downloads/$name" -o "$downloads/$name" \
            || die "could not download $name from the hub"
        actual="$("$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$downloads/$name")"
        [ "$actual" = "$sum" ] || die "checksum mismatch for $name: expected $sum, got $actual"
    done < "$downloads/SHA256SUMS"
    if "${PIP[@]}" install --upgrade --no-index --find-links "$downloads" clawbot-connector 2>"$downloads/pip.log"; then
        installed=1
        say "Installed the connector from the hub"
    else
        echo "clawbot installer: the hub has no wheel for this machine; trying the package index" >&2
    fi
fi
if [ "$installed" = 0 ]; then
    "${PIP[@]}" install --upgrade clawbot-connector \
        || die "could not install clawbot-connector (from the hub or the package index)"
    say "Installed the connector from the package index"
fi

CONFIG="$INSTALL_DIR/config.json"
if [ -f "$CONFIG" ]; then
    say "Keeping the existing $CONFIG"
else
    [ -n "$TOKEN" ] || echo "clawbot installer: warning: no token given; set \"token\" in $CONFIG (ask the hub's admin for one)" >&2
    # Values go through the environment, never through the shell's quoting.
    HUB_URL="$HUB_URL" TOKEN="$TOKEN" BOT_ID="$BOT_ID" BOT_NAME="$BOT_NAME" \
    CAPABILITIES="$CAPABILITIES" GROUP_LIST="$GROUP_LIST" CONFIG="$CONFIG" \
    "$INSTALL_DIR/venv/bin/python" - <<'PY'
import json, os, re, socket

hub = os.environ["HUB_URL"]
ws = ("wss://" + hub[len("https://"):]) if hub.startswith("https://") else ("ws://" + hub[len("http://"):])
host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-._") or "host"
split = lambda text: [part.strip() for part in text.split(",") if part.strip()]
config = {
    "server_url": ws + "/ws",
    "rest_url": hub,
    "token": os.environ["TOKEN"] or None,
    "bot_id": os.environ["BOT_ID"] or ("clawdbot-" + host)[:64],
    "capabilities": split(os.environ["CAPABILITIES"]),
    "groups": split(os.environ["GROUP_LIST"]),
}
if os.environ["BOT_NAME"]:
    config["bot_name"] = os.environ["BOT_NAME"]
path = os.environ["CONFIG"]
descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(descriptor, "w") as file:
    json.dump(config, file, indent=2)
    file.write("\n")
PY
    say "Wrote $CONFIG (readable only by you)"
fi
chmod 600 "$CONFIG"

cat > "$INSTALL_DIR/start.sh" <<SH
#!/usr/bin/env bash
# Runs the ClawBot connector in the foreground (the service uses this).
# With --background it detaches and records its pid for stop.sh.
set -euo pipefail
if [ "\${1:-}" = "--background" ]; then
    nohup "$INSTALL_DIR/venv/bin/clawbot-connector" run --config "$CONFIG" >>"$INSTALL_DIR/connector.log" 2>&1 &
    echo \$! > "$INSTALL_DIR/connector.pid"
    exit 0
fi
exec "$INSTALL_DIR/venv/bin/clawbot-connector" run --config "$CONFIG"
SH
cat > "$INSTALL_DIR/stop.sh" <<SH
#!/usr/bin/env bash
# Stops the ClawBot connector, however it was started.
if [ -f "$LAUNCH_AGENT" ]; then launchctl bootout "gui/\$(id -u)" "$LAUNCH_AGENT" 2>/dev/null || true; fi
if [ -f "$SYSTEMD_UNIT" ]; then systemctl --user stop clawbot-connector.service 2>/dev/null || true; fi
if [ -f "$INSTALL_DIR/connector.pid" ]; then
    kill "\$(cat "$INSTALL_DIR/connector.pid")" 2>/dev/null || true
    rm -f "$INSTALL_DIR/connector.pid"
fi
SH
chmod 755 "$INSTALL_DIR/start.sh" "$INSTALL_DIR/stop.sh"

if [ "$NO_SERVICE" = 1 ]; then
    say "No service installed (--no-service); start it with $INSTALL_DIR/start.sh --background"
elif [ "$(uname -s)" = "Darwin" ]; then
    mkdir -p "$(dirname "$LAUNCH_AGENT")"
    launch_agent_plist > "$LAUNCH_AGENT"
    launchctl bootout "gui/$(id -u)" "$LAUNCH_AGENT" 2>/dev/null || true
    launchctl bootstrap "gui/$(id -u)" "$LAUNCH_AGENT" || die "launchctl could not load $LAUNCH_AGENT"
    say "Installed and started the LaunchAgent network.clawbot.connector"
elif command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
    mkdir -p "$(dirname "$SYSTEMD_UNIT")"
    cat > "$SYSTEMD_UNIT" <<UNIT
[Unit]
Description=ClawBot Network connector
After=network-online.target

[Service]
ExecStart=$INSTALL_DIR/start.sh
Restart=always
RestartSec=5
# Exit status 2 is a configuration error: restarting cannot fix it.
RestartPreventExitStatus=2

[Install]
WantedBy=default.target
UNIT
    systemctl --user daemon-reload
    systemctl --user enable --now clawbot-connector.service || die "systemd could not start clawbot-connector.service"
    say "Installed and started the systemd user service clawbot-connector"
else
    say "No user service manager here; start the connector with $INSTALL_DIR/start.sh --background"
fi

say "Done. Check it with: $INSTALL_DIR/venv/bin/clawbot-connector status"
