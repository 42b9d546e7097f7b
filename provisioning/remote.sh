# shellcheck shell=bash
# The half of provision.sh that runs on the Pi (as root). Not run directly: provision.sh sends this file
# through SSH, preceded by its settings and followed by the name of one step, for every step.
#
# Output protocol, one line each, read by provision.sh:
#   CHANGED <what>   a change was made            WOULD <what>   a change --dry-run would make
#   FACT <k>=<v>     something the laptop needs    ERROR <why>    (stderr) why the step failed
# Every step is idempotent: it looks before it changes, and a second run prints no CHANGED line.

set -euo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

# Settings from provision.sh (defaults make the file lint- and test-friendly).
ROOT=${ROOT:-}            # a prefix for every path: a sandbox root in tests, empty on a Pi
DRY=${DRY:-0}             # 1: --dry-run, change nothing
HB_USER=${HB_USER:-homeboard}
SERVICE=${SERVICE:-homeboard.service}
KIOSK_UNIT=${KIOSK_UNIT:-homeboard-kiosk.service}
HW_WATCHDOG=${HW_WATCHDOG:-1}
MIN_FREE_MB=${MIN_FREE_MB:-600}
PI_MODEL=${PI_MODEL:-}
HEALTHZ_WAIT_S=${HEALTHZ_WAIT_S:-90}
FLAVOR=${FLAVOR:-}        # rpios (labwc) | debian (sway): found by remote_check_target
WALL_UNIT=${WALL_UNIT:-homeboard-wall.service}
WALL_VT=${WALL_VT:-1}     # the console the wall owns (systemd/homeboard-wall.service: TTYPath=/dev/tty1)
WALL_SETTLE_S=${WALL_SETTLE_S:-10} # how long the wall session must stay up before it counts as running
export HOMEBOARD_ROOT="$ROOT"

OPT="$ROOT/opt/homeboard"
ETC="$ROOT/etc/homeboard"
SYSTEMD="$ROOT/etc/systemd"
HB_HOME="$ROOT/home/$HB_USER"
BOOT="$ROOT/boot/firmware"

# ------------------------------------------------------------------------------------------ helpers

die() {
	printf 'ERROR %s\n' "$*" >&2
	exit 1
}
changed() { printf 'CHANGED %s\n' "$*"; }
fact() { printf 'FACT %s\n' "$*"; }

# change "what" command...: make a change and report it; with --dry-run only report it.
change() {
	local what=$1
	shift
	if [ "$DRY" = 1 ]; then
		printf 'WOULD %s\n' "$what"
		return 0
	fi
	"$@" || die "$what: '$1' failed"
	changed "$what"
}

# put_file DEST MODE [OWNER] < content: replace DEST atomically when its content or mode differs.
# Returns 0 when it changed (or would, in --dry-run), 1 when DEST was already right.
put_file() {
	local dest=$1 mode=$2 owner=${3:-} tmp
	tmp=$(mktemp)
	cat >"$tmp"
	if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
		rm -f "$tmp"
		return 1
	fi
	if [ "$DRY" = 1 ]; then
		rm -f "$tmp"
		printf 'WOULD write %s\n' "$dest"
		return 0
	fi
	mkdir -p "$(dirname "$dest")"
	if ! cp "$tmp" "$dest.hb-new" || ! chmod "$mode" "$dest.hb-new"; then
		rm -f "$tmp" "$dest.hb-new"
		die "cannot write $dest"
	fi
	rm -f "$tmp"
	if [ -n "$owner" ]; then chown "$owner" "$dest.hb-new" || die "chown $owner $dest failed"; fi
	mv -f "$dest.hb-new" "$dest"
	changed "write $dest"
}

# put_from_opt DEST MODE OWNER FILE: put_file with the content of a file of the installed code ($OPT/FILE).
put_from_opt() {
	local dest=$1 mode=$2 owner=$3 src="$OPT/$4"
	if [ -f "$src" ]; then
		put_file "$dest" "$mode" "$owner" <"$src"
	elif [ "$DRY" = 1 ]; then
		printf 'WOULD write %s\n' "$dest"
	else
		die "$src is missing (the code step should have copied it)"
	fi
}

unit_enabled() { [ "$(systemctl is-enabled "$@" 2>/dev/null || true)" = enabled ]; }
unit_active() { [ "$(systemctl is-active "$@" 2>/dev/null || true)" = active ]; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# apt_knows PKG...: every PKG has an installation candidate in the configured archives.
apt_knows() {
	local p
	for p in "$@"; do
		# grep without -q reads to the end: an early exit would SIGPIPE apt-cache and fail the pipe (pipefail).
		apt-cache policy "$p" 2>/dev/null | grep 'Candidate: [^(]' >/dev/null || return 1
	done
}
# warn WHY: something the person should know that is not a failure of this run (provision.sh lists them).
warn() { printf 'WARNING %s\n' "$*"; }

# The last line in a unit's journal (this boot) that says what went wrong, or nothing: the program's own
# words first (labwc's "[ERROR] ... Found 0 GPUs"), systemd's ("status=1/FAILURE") only when it said none.
unit_last_error() {
	local lines words='error|fail|unable|cannot|denied|no such|not found|refus|condition|panic|status='
	lines=$(journalctl -b -u "$1" --no-pager -o short-iso -n 80 2>/dev/null | grep -iE "$words" | grep -v 'Scheduled restart job' || true)
	{ printf '%s\n' "$lines" | grep -v ' systemd\[1\]: ' || printf '%s\n' "$lines"; } | tail -n 1 |
		sed 's/^[^ ]* [^ ]* [^ ]*: //' | cut -c1-300
}

# wall_session_state: "running" or the reason it is not, observed over WALL_SETTLE_S: is-active, the
# number of restarts meanwhile (a compositor that dies every few seconds is "active" at any one instant),
# and the journal's last error.
wall_session_state() {
	local state restarts_before restarts_after result why err
	restarts_before=$(systemctl show -p NRestarts --value "$WALL_UNIT" 2>/dev/null || echo 0)
	sleep "$WALL_SETTLE_S"
	state=$(systemctl is-active "$WALL_UNIT" 2>/dev/null || true)
	restarts_after=$(systemctl show -p NRestarts --value "$WALL_UNIT" 2>/dev/null || echo 0)
	if [ "$state" = active ] && [ "${restarts_after:-0}" = "${restarts_before:-0}" ]; then
		echo running
		return 0
	fi
	result=$(systemctl show -p Result --value "$WALL_UNIT" 2>/dev/null || true)
	why="$WALL_UNIT is ${state:-unknown}"
	if [ "${restarts_after:-0}" != "${restarts_before:-0}" ]; then
		why="$why, restarted $((restarts_after - restarts_before)) time(s) in ${WALL_SETTLE_S} s"
	fi
	if [ -n "$result" ] && [ "$result" != success ]; then why="$why (result: $result)"; fi
	if [ "$(systemctl show -p ConditionResult --value "$WALL_UNIT" 2>/dev/null || true)" = no ]; then
		why="$why: no console /dev/tty$WALL_VT here (a container or a machine without a screen?)"
	fi
	err=$(unit_last_error "$WALL_UNIT")
	printf '%s; last error: %s\n' "$why" "${err:-none in the journal}"
}

# The installed config's server settings: "host port scheme".
server_address() {
	"$OPT/.venv/bin/python" - "$ETC/config.yaml" <<'PY'
import sys, yaml
try:
    doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
except Exception:
    doc = {}
server = doc.get("server") or {}
tls = server.get("tls") or {}
print(server.get("host", "127.0.0.1"), server.get("port", 8080), "https" if tls.get("certfile") else "http")
PY
}

# ------------------------------------------------------------------------------------------ steps

# Which system this is, by what it can install rather than by its CPU: Raspberry Pi OS (/etc/rpi-issue, or
# its archive offers labwc and wlopm) → labwc; plain Debian bookworm (amd64/arm64, e.g. a mini PC on the
# wall) → Debian's own sway, wlr-randr and chromium. Prints rpios or debian, or dies with the reason.
target_flavor() {
	local os_id=$1 arch=$2 os_name=$3
	if [ -e "$ROOT/etc/rpi-issue" ] || apt_knows labwc wlopm; then
		echo rpios
		return 0
	fi
	# The package lists may be missing or old (a fresh image): look again after an update. The lists
	# are not the installation: --dry-run may refresh them too.
	if ! apt_knows sway; then
		apt-get update -qq >&2 || die "apt-get update failed: is the target online, and is its clock right (date)?"
		if apt_knows labwc wlopm; then
			echo rpios
			return 0
		fi
	fi
	case "$os_id:$arch" in
	debian:amd64 | debian:arm64) ;;
	debian:*) die "unsupported target: $os_name on $arch. Homeboard runs on Raspberry Pi OS Bookworm, or on plain Debian bookworm for amd64 or arm64." ;;
	*) die "unsupported target: $os_name (ID=$os_id) is neither Raspberry Pi OS nor Debian. Flash Raspberry Pi OS Lite (64-bit) with Raspberry Pi Imager." ;;
	esac
	apt_knows sway wlr-randr chromium ||
		die "unsupported target: $os_name has no Raspberry Pi OS archive (no labwc, no wlopm) and its Debian archive offers no sway, wlr-randr and chromium: check /etc/apt/sources.list"
	echo debian
}

# Raspberry Pi OS or Debian Bookworm, a known architecture, Python ≥ 3.11, enough space. Changes nothing
# (except, when the package lists lack what it looks for, refreshing them with apt-get update).
remote_check_target() {
	local os_name os_id codename arch model py probe free_mb flavor
	[ -r "$ROOT/etc/os-release" ] || die "cannot read /etc/os-release on the target"
	# shellcheck disable=SC1091 # the target's file, not ours
	os_name=$(. "$ROOT/etc/os-release" && printf '%s' "${PRETTY_NAME:-unknown}")
	# shellcheck disable=SC1091
	os_id=$(. "$ROOT/etc/os-release" && printf '%s' "${ID:-unknown}")
	# shellcheck disable=SC1091
	codename=$(. "$ROOT/etc/os-release" && printf '%s' "${VERSION_CODENAME:-unknown}")
	if [ "$codename" != bookworm ]; then
		die "wrong OS: the target runs $os_name ($codename); Homeboard needs Raspberry Pi OS Bookworm (Debian 12). Flash Raspberry Pi OS Lite (64-bit) with Raspberry Pi Imager."
	fi
	arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
	case "$arch" in
	arm64 | armhf | amd64 | aarch64 | armv7l | x86_64) ;;
	*) die "unsupported architecture $arch" ;;
	esac
	model=""
	if [ -r "$ROOT/proc/device-tree/model" ]; then model=$(tr -d '\0' <"$ROOT/proc/device-tree/model"); fi
	case "$model" in
	"Raspberry Pi"*) ;;
	*)
		printf 'not a Raspberry Pi (%s, %s): skipping I2C, 1-Wire, GPIO and watchdog setup\n' "${model:-no model}" "$arch"
		model=""
		;;
	esac
	py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || die "python3 is missing on the target"
	python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
		die "python3 $py is too old; Homeboard needs 3.11 (Bookworm has it)"
	probe="$ROOT/opt"
	while [ ! -d "$probe" ]; do probe=$(dirname "$probe"); done
	free_mb=$(df -Pm "$probe" | awk 'NR == 2 { print $4 }')
	if [ "$free_mb" -lt "$MIN_FREE_MB" ]; then
		die "no space: only $free_mb MB free in $probe on the target, Homeboard needs $MIN_FREE_MB MB. Free some (sudo apt-get clean) or use a larger SD card."
	fi
	flavor=$(target_flavor "$os_id" "$arch" "$os_name") || exit 1
	printf '%s, %s, %s, Python %s, %s MB free\n' "${model:-generic host}" "$os_name" "$arch" "$py" "$free_mb"
	case "$flavor" in
	rpios) echo "Raspberry Pi OS: the wall runs labwc" ;;
	debian) echo "plain Debian: the wall runs Debian's sway (labwc and wlopm exist only in Raspberry Pi OS's archive)" ;;
	esac
	fact "model=$model"
	fact "flavor=$flavor"
}

# Debian packages: the compositor, the browser, the display tools, the GPIO library. Only missing ones.
# No display manager: systemd/homeboard-wall.service starts the compositor itself.
remote_packages() {
	local want missing="" p
	want="rsync curl python3-venv wlr-randr wtype v4l-utils i2c-tools fonts-noto-color-emoji"
	case "$FLAVOR" in
	rpios)
		want="$want labwc wlopm"
		# Newer images call the browser "chromium", older ones "chromium-browser": whichever the archive has.
		if ! pkg_installed chromium && ! pkg_installed chromium-browser; then
			if apt_knows chromium; then want="$want chromium"; else want="$want chromium-browser"; fi
		fi
		;;
	debian) want="$want sway chromium" ;;
	*) die "unknown target flavor '$FLAVOR' (the target check did not run?)" ;;
	esac
	case "$PI_MODEL" in
	# RPi.GPIO cannot drive a Pi 5 ("Cannot determine SOC peripheral base address"); rpi-lgpio provides the
	# same RPi.GPIO module on top of /dev/gpiochip. The two packages conflict: only one is ever installed.
	"Raspberry Pi 5"*) want="$want python3-rpi-lgpio" ;;
	"Raspberry Pi"*) want="$want python3-rpi.gpio" ;;
	esac
	for p in $want; do pkg_installed "$p" || missing="$missing $p"; done
	if [ -z "$missing" ]; then
		echo "all packages present"
		return 0
	fi
	if [ "$DRY" = 1 ]; then
		printf 'WOULD install%s\n' "$missing"
		return 0
	fi
	apt-get update -qq >&2 || die "apt-get update failed: is the Pi online, and is its clock right (date)?"
	# shellcheck disable=SC2086 # the list is meant to split into words
	apt-get install -y -qq --no-install-recommends $missing >&2 || die "apt-get install failed for:$missing"
	changed "install$missing"
}

# The account that runs both the server and the kiosk session; lingering, so its user manager runs from boot.
remote_account() {
	local g members
	for g in gpio i2c; do
		getent group "$g" >/dev/null || change "create group $g" groupadd --system "$g"
	done
	if ! getent passwd "$HB_USER" >/dev/null; then
		# No password and no login shell: nobody logs in as homeboard; homeboard-wall.service opens its session.
		change "create user $HB_USER" useradd --create-home --home-dir "$HB_HOME" --shell /usr/sbin/nologin \
			--user-group --comment "Homeboard wall" "$HB_USER"
	fi
	# video: HDMI-CEC (/dev/cec0) and the backlight; render: the GPU; input: a touchscreen.
	for g in gpio i2c video render input; do
		getent group "$g" >/dev/null || continue
		members=$(getent group "$g" | cut -d: -f4)
		case ",$members," in
		*",$HB_USER,"*) ;;
		*) change "add $HB_USER to group $g" usermod -aG "$g" "$HB_USER" ;;
		esac
	done
	if [ ! -e "$ROOT/var/lib/systemd/linger/$HB_USER" ]; then
		change "enable lingering for $HB_USER (its user manager runs from boot)" loginctl enable-linger "$HB_USER"
	fi
}

# I2C and 1-Wire on, the hardware watchdog (Pi only), the journal in RAM.
remote_interfaces() {
	local reboot_for="" iface cfg
	if [ -n "$PI_MODEL" ]; then
		# raspi-config nonint get_X prints 0 when X is enabled; do_X 0 enables it.
		for iface in i2c onewire; do
			if [ "$(raspi-config nonint "get_$iface" 2>/dev/null || true)" != 0 ]; then
				change "enable $iface (raspi-config)" raspi-config nonint "do_$iface" 0
				reboot_for="$reboot_for $iface"
			fi
		done
		if [ "$HW_WATCHDOG" = 1 ]; then
			cfg="$BOOT/config.txt"
			[ -f "$cfg" ] || die "$cfg is missing: is /boot/firmware mounted?"
			if ! grep -qx 'dtparam=watchdog=on' "$cfg"; then
				# shellcheck disable=SC2016 # $1 belongs to the inner sh
				change "enable the hardware watchdog in $cfg" \
					sh -c 'printf "\n# Homeboard: hardware watchdog, fed by systemd (RuntimeWatchdogSec)\ndtparam=watchdog=on\n" >>"$1"' _ "$cfg"
				reboot_for="$reboot_for watchdog"
			fi
			if put_from_opt "$SYSTEMD/system.conf.d/homeboard-watchdog.conf" 0644 "" systemd/hardware-watchdog.conf; then
				reboot_for="$reboot_for watchdog"
			fi
		fi
	fi
	if put_from_opt "$SYSTEMD/journald.conf.d/homeboard.conf" 0644 "" systemd/journald.conf; then
		if [ "$DRY" = 0 ]; then systemctl restart systemd-journald || die "systemctl restart systemd-journald failed"; fi
	fi
	if [ -n "$reboot_for" ]; then fact "reboot=$reboot_for"; fi
}

# The Python environment, built beside the live one and swapped in only when complete: a failed pip leaves
# the previous version running. Rebuilt only when the dependencies change. PYPROJECT_B64: pyproject.toml.
remote_venv() {
	local reqs stamp
	# A swap interrupted by a power cut leaves .venv.old: put it back first.
	if [ ! -d "$OPT/.venv" ] && [ -d "$OPT/.venv.old" ]; then mv "$OPT/.venv.old" "$OPT/.venv"; fi
	# The GPIO library comes from apt (python3-rpi.gpio / python3-rpi-lgpio, seen through
	# --system-site-packages), not pip: no compiler needed on the Pi, and a Pi 5 needs the lgpio one.
	reqs=$(printf '%s' "${PYPROJECT_B64:?}" | base64 -d | python3 -c '
import re, sys, tomllib
for dep in tomllib.loads(sys.stdin.read())["project"]["dependencies"]:
    name = re.split(r"[\s;<>=!~\[]", dep, maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")
    if name != "rpi-gpio":
        print(dep)
') || die "cannot read the dependencies from pyproject.toml"
	stamp=$(printf '%s\n%s system-site-packages\n' "$reqs" "$(python3 -V)" | sha256sum | cut -d' ' -f1)
	if [ -x "$OPT/.venv/bin/python" ] && [ "$(cat "$OPT/.venv/.homeboard-deps" 2>/dev/null || true)" = "$stamp" ]; then
		echo "dependencies unchanged"
		return 0
	fi
	if [ "$DRY" = 1 ]; then
		echo "WOULD build the Python environment in $OPT/.venv"
		return 0
	fi
	echo "building the Python environment (a few minutes on a Pi)"
	mkdir -p "$OPT"
	rm -rf "$OPT/.venv.new"
	python3 -m venv --system-site-packages "$OPT/.venv.new" >&2 ||
		die "python3 -m venv failed (is python3-venv installed?)"
	printf '%s\n' "$reqs" >"$OPT/.venv.new/homeboard-requirements.txt"
	if ! "$OPT/.venv.new/bin/python" -m pip install --disable-pip-version-check --no-input -q \
		-r "$OPT/.venv.new/homeboard-requirements.txt" >&2; then
		rm -rf "$OPT/.venv.new"
		die "pip install failed (see above); the previous environment is untouched"
	fi
	printf '%s\n' "$stamp" >"$OPT/.venv.new/.homeboard-deps"
	rm -rf "$OPT/.venv.old"
	if [ -d "$OPT/.venv" ]; then mv "$OPT/.venv" "$OPT/.venv.old"; fi
	mv "$OPT/.venv.new" "$OPT/.venv"
	rm -rf "$OPT/.venv.old"
	changed "build the Python environment in $OPT/.venv"
}

# Byte-compile once as root after a code change: the service cannot write to /opt (ProtectSystem=strict),
# and compiling every module at every start costs seconds on a Pi.
remote_compile() {
	"$OPT/.venv/bin/python" -m compileall -q "$OPT/server" "$OPT/sensors" >/dev/null || true
}

# /etc/homeboard/config.yaml: installed when absent; a person's edited copy is never overwritten.
# CONFIG_B64: the local config.yaml.
remote_config() {
	local dest="$ETC/config.yaml" new
	if [ ! -e "$dest" ]; then
		if [ "$DRY" = 0 ]; then
			mkdir -p "$ETC"
			chmod 0755 "$ETC"
		fi
		printf '%s' "${CONFIG_B64:?}" | base64 -d | put_file "$dest" 0640 "root:$HB_USER" || true
		return 0
	fi
	new=$(mktemp)
	printf '%s' "${CONFIG_B64:?}" | base64 -d >"$new"
	if cmp -s "$new" "$dest"; then
		echo "$dest is up to date"
	else
		echo "$dest differs from your local copy and was kept (edits on the Pi are never overwritten):"
		diff -u --label "$dest (on the Pi, kept)" --label "config.yaml (local)" "$dest" "$new" | sed 's/^/    /' || true
		echo "To install the local copy instead: sudo rm $dest on the Pi, then run provision.sh again."
	fi
	rm -f "$new"
}

# /etc/homeboard/secrets.env, 0600 root:root: read by systemd (EnvironmentFile=) before it switches to the
# service user. SECRETS_B64: "NAME='value'" lines from the laptop's environment. Values already on the Pi
# for names not sent this time are kept. Values are never printed.
remote_secrets() {
	local dest="$ETC/secrets.env" new keep line key used n
	umask 077
	new=$(mktemp)
	keep=$(mktemp)
	printf '%s' "${SECRETS_B64:-}" | base64 -d >"$new"
	if [ -f "$dest" ]; then
		while IFS= read -r line; do
			case "$line" in '#'* | '') continue ;; esac
			key=${line%%=*}
			grep -q "^$key=" "$new" || printf '%s\n' "$line" >>"$keep"
		done <"$dest"
	fi
	if ! {
		echo "# Homeboard secrets (NAME='value'), written by provision.sh. Mode 0600, read by systemd only."
		sort "$keep" "$new"
	} | put_file "$dest" 0600 root:root; then
		echo "$dest is up to date"
	fi
	rm -f "$new" "$keep"
	# Every ${NAME} the installed config uses in a value needs one, or the server stops with a config error.
	# (The same rule as the loader's: a ${NAME} in a comment is not used.)
	[ -x "$OPT/.venv/bin/python" ] && [ -f "$ETC/config.yaml" ] || return 0
	used=$("$OPT/.venv/bin/python" "$OPT/provisioning/secret_names.py" "$ETC/config.yaml" 2>&1) ||
		{ warn "cannot list the secrets $ETC/config.yaml uses: ${used##*: }"; return 0; }
	for n in $used; do
		grep -q "^$n=" "$dest" 2>/dev/null ||
			warn "config.yaml uses \${$n}, which has no value: export $n=... on your computer and run again"
	done
}

# The wall session's files: the compositor's start-up files (labwc on Raspberry Pi OS, sway on plain Debian;
# homeboard-wall.service starts it) and the browser unit. Also the polkit rule for the wall watchdog's
# last-resort reboot, and backlight permissions.
remote_session() {
	local own="$HB_USER:$HB_USER" d wants compositor=labwc
	if [ "$FLAVOR" = debian ]; then compositor=sway; fi
	if [ "$DRY" = 0 ]; then
		for d in "$HB_HOME/.config" "$HB_HOME/.config/$compositor" "$HB_HOME/.config/systemd" \
			"$HB_HOME/.config/systemd/user" "$HB_HOME/.config/systemd/user/default.target.wants"; do
			if [ ! -d "$d" ]; then
				mkdir -p "$d"
				chown "$own" "$d"
			fi
		done
	fi
	if [ "$FLAVOR" = debian ]; then
		put_from_opt "$HB_HOME/.config/sway/config" 0644 "$own" kiosk/session/sway.config || true
	else
		put_file "$HB_HOME/.config/labwc/autostart" 0644 "$own" <<'AUTOSTART' || true
# Written by Homeboard provision.sh. labwc runs this when the wall session starts.
# No swayidle here: Homeboard switches the screen itself (display.backend in config.yaml).
# Hand this session's display to the user manager, then (re)start the browser unit against it.
systemctl --user import-environment WAYLAND_DISPLAY XDG_RUNTIME_DIR XDG_SESSION_TYPE XDG_CURRENT_DESKTOP
systemctl --user restart homeboard-kiosk.service &
# Hide the pointer: rc.xml binds HideCursor to Super+H, and wtype presses it once the page is up.
(sleep 5 && command -v wtype >/dev/null && wtype -M logo -k h -m logo) &
AUTOSTART
		put_file "$HB_HOME/.config/labwc/rc.xml" 0644 "$own" <<'RCXML' || true
<?xml version="1.0"?>
<!-- Written by Homeboard provision.sh: a wall, not a desktop. No default key bindings (no Alt+Tab, no
     menus); Super+H hides the pointer and parks it in a corner. -->
<labwc_config>
  <keyboard>
    <keybind key="W-h">
      <action name="HideCursor" />
      <action name="WarpCursor" to="output" x="-1" y="-1" />
    </keybind>
  </keyboard>
</labwc_config>
RCXML
	fi
	put_from_opt "$HB_HOME/.config/systemd/user/$KIOSK_UNIT" 0644 "$own" "systemd/$KIOSK_UNIT" || true
	# The page's address follows the installed config (server.port, TLS): a drop-in beside the unit.
	local host port scheme
	if [ -x "$OPT/.venv/bin/python" ] && read -r host port scheme < <(server_address); then
		[ -d "$HB_HOME/.config/systemd/user/$KIOSK_UNIT.d" ] || [ "$DRY" = 1 ] || {
			mkdir -p "$HB_HOME/.config/systemd/user/$KIOSK_UNIT.d"
			chown "$own" "$HB_HOME/.config/systemd/user/$KIOSK_UNIT.d"
		}
		printf '# Written by provision.sh from server.port in /etc/homeboard/config.yaml.\n[Service]\nEnvironment=HOMEBOARD_URL=%s://127.0.0.1:%s/?wall=1\n' \
			"$scheme" "$port" | put_file "$HB_HOME/.config/systemd/user/$KIOSK_UNIT.d/10-url.conf" 0644 "$own" || true
	fi
	wants="$HB_HOME/.config/systemd/user/default.target.wants/$KIOSK_UNIT"
	if [ ! -L "$wants" ]; then
		change "enable $KIOSK_UNIT for $HB_USER" ln -s "../$KIOSK_UNIT" "$wants"
	fi
	put_file "$ROOT/etc/polkit-1/rules.d/50-homeboard.rules" 0644 <<POLKIT || true
// Written by Homeboard provision.sh: the wall watchdog (server/wall/watch.py) may reboot the Pi as its
// last step, when the wall page stayed dark through a page reload and browser restarts.
polkit.addRule(function (action, subject) {
    if ((action.id == "org.freedesktop.login1.reboot" ||
         action.id == "org.freedesktop.login1.reboot-multiple-sessions") &&
        subject.user == "$HB_USER") {
        return polkit.Result.YES;
    }
});
POLKIT
	if put_file "$ROOT/etc/udev/rules.d/60-homeboard-backlight.rules" 0644 <<'UDEV'; then
# Written by Homeboard provision.sh: the video group (so the homeboard user) may switch and dim a DSI
# touchscreen's backlight (display.backend: backlight).
SUBSYSTEM=="backlight", ACTION=="add", RUN+="/bin/chgrp video /sys%p/bl_power /sys%p/brightness", RUN+="/bin/chmod g+w /sys%p/bl_power /sys%p/brightness"
UDEV
		if [ "$DRY" = 0 ]; then udevadm control --reload >/dev/null 2>&1 || true; fi
	fi
}

# The systemd version on the target: RestartSteps= and RestartMaxDelaySec= (a growing restart delay) need 254.
systemd_version() { systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 + 0 }'; }

# The server unit, the wall session unit, the sandbox exception for this Pi's backlight, the console the wall
# owns, and the boot target.
remote_units() {
	local reload=0 dropin devices="" bl backoff vt_state dm
	if put_from_opt "$SYSTEMD/system/$SERVICE" 0644 "" "systemd/$SERVICE"; then reload=1; fi
	if put_from_opt "$SYSTEMD/system/$WALL_UNIT" 0644 "" "systemd/$WALL_UNIT"; then reload=1; fi
	# Restarts that never run out, with a back-off where systemd has one (≥ 254; bookworm has 252, where
	# the units' fixed RestartSec= applies).
	backoff="$SYSTEMD/system/$WALL_UNIT.d/30-backoff.conf"
	if [ "$(systemd_version)" -ge 254 ]; then
		if printf '# Written by provision.sh: restart delays grow from RestartSec= to 2 minutes.\n[Service]\nRestartSteps=8\nRestartMaxDelaySec=2min\n' |
			put_file "$backoff" 0644; then reload=1; fi
	fi
	# ProtectKernelTunables= makes /sys read-only; a DSI backlight must stay writable for the server.
	dropin="$SYSTEMD/system/$SERVICE.d/20-backlight.conf"
	for bl in "$ROOT"/sys/class/backlight/*; do
		[ -e "$bl" ] || continue
		devices="$devices $(readlink -f "$bl")"
	done
	if [ -n "$devices" ]; then
		if printf '# Written by provision.sh: the touchscreen backlight stays writable for the server.\n[Service]\nReadWritePaths=%s\n' \
			"${devices# }" | put_file "$dropin" 0644; then reload=1; fi
	elif [ -e "$dropin" ]; then
		change "remove $dropin (no backlight any more)" rm -f "$dropin"
		reload=1
	fi
	if [ "$reload" = 1 ]; then
		if [ "$DRY" = 1 ]; then
			echo "WOULD reload systemd (daemon-reload)"
		else
			systemctl daemon-reload || die "systemctl daemon-reload failed"
		fi
	fi
	unit_enabled "$SERVICE" || change "enable $SERVICE" systemctl enable "$SERVICE"
	# One owner of the wall's console: no login prompt on it (logind would start autovt@ there too).
	vt_state=$(systemctl is-enabled "getty@tty$WALL_VT.service" 2>/dev/null || true)
	if [ "$vt_state" != masked ]; then
		change "mask getty@tty$WALL_VT and autovt@tty$WALL_VT (the wall owns tty$WALL_VT)" \
			systemctl mask "getty@tty$WALL_VT.service" "autovt@tty$WALL_VT.service"
	fi
	# Display managers would claim the same console: lightdm (the desktop image) and greetd (which earlier
	# versions of Homeboard used).
	for dm in lightdm.service greetd.service; do
		if unit_enabled "$dm"; then change "disable ${dm%.service} ($WALL_UNIT shows the wall instead)" systemctl disable "$dm"; fi
	done
	unit_enabled "$WALL_UNIT" ||
		change "enable $WALL_UNIT (the compositor on tty$WALL_VT, as $HB_USER)" systemctl enable "$WALL_UNIT"
	if [ "$(systemctl get-default 2>/dev/null || true)" != graphical.target ]; then
		change "set the boot target to graphical.target" systemctl set-default graphical.target
	fi
}

# Restart what changed, start what is not running; touch nothing otherwise. Starting the wall session is
# not a change and its failure is not this step's: remote_wall observes and reports it afterwards.
# DEPLOY_CHANGES / SESSION_CHANGES: how many changes the earlier steps made to the server / the session.
remote_restart() {
	local wall_state
	if [ "${DEPLOY_CHANGES:-0}" -gt 0 ] || ! unit_active "$SERVICE"; then
		# A unit that hit its start limit refuses even this start: clear that first.
		systemctl reset-failed "$SERVICE" >/dev/null 2>&1 || true
		change "restart $SERVICE" systemctl restart "$SERVICE"
	else
		echo "$SERVICE is running the current version"
	fi
	if [ "${SESSION_CHANGES:-0}" -gt 0 ]; then
		# The user manager runs (lingering): reload its units; the (re)started compositor restarts the browser.
		systemctl --user -M "$HB_USER@" daemon-reload >/dev/null 2>&1 || true
	fi
	wall_state=$(systemctl is-active "$WALL_UNIT" 2>/dev/null || true)
	if [ "$wall_state" != active ] && [ "$wall_state" != activating ]; then
		echo "starting the wall session (it was ${wall_state:-not running})"
	elif [ "${SESSION_CHANGES:-0}" -gt 0 ]; then
		echo "restarting the wall session (its files changed)"
	else
		return 0
	fi
	# A unit of ours that failed is reset first, so a start limit or an old failure cannot refuse this start.
	systemctl reset-failed "$WALL_UNIT" >/dev/null 2>&1 || true
	systemctl restart "$WALL_UNIT" >/dev/null 2>&1 || true
}

# What the wall session does after a settle time: running, or a warning with the reason. Never fails the
# run: a wall that cannot start (no screen, as in a container) leaves a healthy server healthy.
remote_wall() {
	local state
	state=$(wall_session_state)
	if [ "$state" = running ]; then
		echo "the wall session runs ($WALL_UNIT active for ${WALL_SETTLE_S} s without a restart)"
	else
		warn "the wall session is not running: $state"
	fi
}

# Wait until the server answers /healthz on the Pi itself; on failure show the end of its journal.
remote_healthz() {
	local host port scheme url waited=0
	read -r host port scheme < <(server_address) || die "cannot read server.port from $ETC/config.yaml"
	url="$scheme://127.0.0.1:$port/healthz"
	until curl -fsSk --max-time 2 -o /dev/null "$url" 2>/dev/null; do
		# A unit that failed for good (a config error is not retried) will not answer: say so at once.
		if systemctl is-failed --quiet "$SERVICE" 2>/dev/null; then
			journalctl -u "$SERVICE" -n 25 --no-pager -o cat >&2 2>/dev/null || true
			die "the server stopped (its log is above; also: sudo systemctl status $SERVICE)"
		fi
		if [ "$waited" -ge "$HEALTHZ_WAIT_S" ]; then
			journalctl -u "$SERVICE" -n 25 --no-pager -o cat >&2 2>/dev/null || true
			die "the server did not answer $url within $HEALTHZ_WAIT_S s (its log is above; also: sudo systemctl status $SERVICE)"
		fi
		sleep 1
		waited=$((waited + 1))
	done
	echo "the server answers on $url"
	fact "host=$host"
	fact "port=$port"
	fact "scheme=$scheme"
}
