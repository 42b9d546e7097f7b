#!/usr/bin/env bash
# Install or update Homeboard on a Raspberry Pi over SSH, from your computer. Safe to run again:
# a second run changes nothing and says so. `doctor` checks a running Pi and says what to fix.
#
#   provisioning/provision.sh [--dry-run] [-p PORT] [-i KEY] [-c CONFIG] USER@HOST
#   provisioning/provision.sh doctor [-p PORT] [-i KEY] USER@HOST
#
# USER needs passwordless sudo on the Pi (the account Raspberry Pi Imager creates has it).
# -c CONFIG: the config.yaml to install when the Pi has none yet (default: the repository's).
# The config is checked on this computer first (python -m server --check-config): a typo stops here,
# before anything reaches the Pi. That needs Python ≥ 3.11 with the project's dependencies: the repository's
# .venv if it has one, else python3 if it can import them, else a .venv built here once (pip, online).
# Secrets: each ${NAME} that config uses in a value (not in a comment) and which is set in this shell's
# environment is written to /etc/homeboard/secrets.env (0600) on the Pi. Values travel inside the SSH
# session, never on a command line, and are never printed.
#
# Targets: Raspberry Pi OS Bookworm (the wall runs labwc), or plain Debian bookworm on amd64/arm64, e.g. a
# mini PC (the wall runs Debian's sway). Anything else is refused before anything changes.
#
# Environment (optional): HOMEBOARD_SSH_CONFIG (ssh -F file), HOMEBOARD_ROOT (prefix for every path on
# the target; tests use a sandbox), HOMEBOARD_HW_WATCHDOG (1 default, 0 off), HOMEBOARD_MIN_FREE_MB (600),
# HOMEBOARD_SECRETS (more secret names), HOMEBOARD_HEALTHZ_WAIT_S (90), HOMEBOARD_WALL_SETTLE_S (10: how
# long the wall session must stay up to count as running), HOMEBOARD_PYTHON (the Python for the config check).
#
# The steps that run on the Pi are in provisioning/remote.sh (doctor's checks in provisioning/doctor.sh); this
# file is the part on your computer.
# Runs with bash ≥ 3.2 (macOS) here and bash 5 on the Pi.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
REMOTE_LIB="$SCRIPT_DIR/remote.sh"
DOCTOR_LIB="$SCRIPT_DIR/doctor.sh" # remote_doctor, sent after remote.sh (whose helpers it uses)
REMOTE_LIBS=("$REMOTE_LIB")        # what remote_run sends before the call
HB_USER=homeboard

MODE=install # install | doctor
DRY_RUN=0
SSH_PORT=""
SSH_KEY=""
CONFIG_FILE="$REPO_ROOT/config.yaml"
TARGET=""
ROOT_PREFIX=${HOMEBOARD_ROOT:-}

SSH_ARGS=()
REMOTE_SHELL=""
CTL_DIR=""
CURRENT_STEP=""
STEP_NO=0
STEP_TOTAL=14
CHANGES=0
DEPLOY_CHANGES=0  # changes that need the server restarted
SESSION_CHANGES=0 # changes that need the browser restarted
ACTIVATED=0       # 1 once new code is in place: a later failure may leave it half set up
REBOOT_FOR=""
PI_MODEL=""
FLAVOR=""
LOCAL_PY=""
WARNINGS=""
LAST_OUTPUT=""
SERVER_URL=""
SERVER_HOST=""
SECRET_NAMES="" # the ${NAME}s the config uses in its values

# ------------------------------------------------------------------------------------------ output

info() { printf '%s\n' "$*"; }

fatal() {
	printf 'provision: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '5,6p' "${BASH_SOURCE[0]}" | sed 's/^# *//'
	exit "${1:-0}"
}

# On every exit: close the SSH connection; after a failure, name the step and say what state the Pi is in.
on_exit() {
	local status=$?
	if [ -n "$CTL_DIR" ]; then
		ssh "${SSH_ARGS[@]}" -O exit "$TARGET" >/dev/null 2>&1 || true
		rm -rf "$CTL_DIR"
	fi
	if [ "$status" -ne 0 ] && [ -n "$CURRENT_STEP" ]; then
		printf '\nFAILED at step "%s" (the reason is above).\n' "$CURRENT_STEP" >&2
		case "$CURRENT_STEP:$ACTIVATED" in
		restart:* | healthz:*)
			printf 'Homeboard is installed, but its server does not answer: fix the cause (its log is above) and run provision.sh again.\n' >&2
			;;
		check_config:*)
			printf 'Nothing was sent to the Pi: fix the config and run provision.sh again.\n' >&2
			;;
		*:1)
			printf 'The new code is in place but not fully set up: fix the cause and run provision.sh again.\n' >&2
			;;
		*)
			printf 'The running installation was not touched: the Pi still runs the previous version (if any).\n' >&2
			;;
		esac
	fi
	exit "$status"
}

step() {
	CURRENT_STEP=$1
	STEP_NO=$((STEP_NO + 1))
	info "[$STEP_NO/$STEP_TOTAL] $2"
}

# ------------------------------------------------------------------------------------------ ssh

setup_ssh() {
	CTL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hb-ssh.XXXXXX")
	# One multiplexed connection for all steps; BatchMode: fail instead of prompting.
	SSH_ARGS=(-o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4
		-o ControlMaster=auto -o "ControlPath=$CTL_DIR/%C" -o ControlPersist=120)
	if [ -n "${HOMEBOARD_SSH_CONFIG:-}" ]; then SSH_ARGS=(-F "$HOMEBOARD_SSH_CONFIG" "${SSH_ARGS[@]}"); fi
	if [ -n "$SSH_PORT" ]; then SSH_ARGS+=(-p "$SSH_PORT"); fi
	if [ -n "$SSH_KEY" ]; then SSH_ARGS+=(-i "$SSH_KEY" -o IdentitiesOnly=yes); fi
}

# The ssh command for rsync -e, each word quoted for rsync's own word splitting.
rsync_rsh() {
	local out="ssh" arg
	for arg in "${SSH_ARGS[@]}"; do out="$out '${arg//\'/}'"; done
	printf '%s' "$out"
}

b64() { base64 | tr -d '\n'; }

# remote_run FUNCTION [NAME=VALUE...]: run one function of remote.sh on the target as root.
# Its output is shown; CHANGED/WOULD lines are counted. The script (and any secret in a NAME=VALUE)
# travels on SSH's stdin, never on a command line. Returns the remote exit status.
remote_run() {
	local fn=$1 out status=0 line assignment
	shift
	out=$(mktemp "${TMPDIR:-/tmp}/hb-out.XXXXXX")
	# shellcheck disable=SC2029 # REMOTE_SHELL is expanded here on purpose: "bash -s" or "sudo -n bash -s"
	{
		printf 'ROOT=%q DRY=%q HB_USER=%q PI_MODEL=%q FLAVOR=%q\n' "$ROOT_PREFIX" "$DRY_RUN" "$HB_USER" "$PI_MODEL" "$FLAVOR"
		printf 'HW_WATCHDOG=%q MIN_FREE_MB=%q HEALTHZ_WAIT_S=%q WALL_SETTLE_S=%q\n' "${HOMEBOARD_HW_WATCHDOG:-1}" \
			"${HOMEBOARD_MIN_FREE_MB:-600}" "${HOMEBOARD_HEALTHZ_WAIT_S:-90}" "${HOMEBOARD_WALL_SETTLE_S:-10}"
		for assignment in "$@"; do printf '%s=%q\n' "${assignment%%=*}" "${assignment#*=}"; done
		cat "${REMOTE_LIBS[@]}"
		# Called on the last line: bash has read the whole script before anything in it can read stdin.
		printf '\n%s </dev/null\n' "$fn"
	} | ssh "${SSH_ARGS[@]}" "$TARGET" "$REMOTE_SHELL" >"$out" || status=$?
	while IFS= read -r line; do
		case "$line" in
		"CHANGED "*)
			CHANGES=$((CHANGES + 1))
			info "  done: ${line#CHANGED }"
			;;
		"WOULD "*)
			CHANGES=$((CHANGES + 1))
			info "  would: ${line#WOULD }"
			;;
		"FACT "*) ;;
		"WARNING "*)
			WARNINGS="$WARNINGS${line#WARNING }"$'\n'
			info "  warning: ${line#WARNING }"
			;;
		*) info "  $line" ;;
		esac
	done <"$out"
	LAST_OUTPUT=$(cat "$out")
	rm -f "$out"
	return "$status"
}

# fact_of NAME: the value the last remote step reported as "FACT NAME=value".
fact_of() { printf '%s\n' "$LAST_OUTPUT" | sed -n "s/^FACT $1=//p" | tail -n 1; }

# counted KIND FUNCTION: run a step and add the changes it made to the deploy or session tally.
counted() {
	local kind=$1 before=$CHANGES
	shift
	"$@"
	case "$kind" in
	deploy) DEPLOY_CHANGES=$((DEPLOY_CHANGES + CHANGES - before)) ;;
	session) SESSION_CHANGES=$((SESSION_CHANGES + CHANGES - before)) ;;
	esac
}

# ------------------------------------------------------------------------------------------ local checks

# A Python on this computer that can run the server's config check (≥ 3.11 and the project's dependencies).
find_local_python() {
	local py
	if [ -n "${HOMEBOARD_PYTHON:-}" ]; then
		LOCAL_PY=$HOMEBOARD_PYTHON
		return 0
	fi
	for py in "$REPO_ROOT/.venv/bin/python" python3; do
		if command -v "$py" >/dev/null && (cd "$REPO_ROOT" && "$py" -c 'import server.__main__') >/dev/null 2>&1; then
			LOCAL_PY=$py
			return 0
		fi
	done
	command -v python3 >/dev/null || fatal "python3 is not installed on this computer; the config check needs it (3.11 or newer)"
	python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
		fatal "python3 on this computer is $(python3 -V 2>&1); the config check needs 3.11 or newer (macOS: brew install python)"
	info "  building a Python environment for the config check in $REPO_ROOT/.venv (once; needs the internet)"
	if ! python3 -m venv "$REPO_ROOT/.venv" ||
		! "$REPO_ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO_ROOT" >&2; then
		fatal "could not build $REPO_ROOT/.venv for the config check (the reason is above)"
	fi
	LOCAL_PY="$REPO_ROOT/.venv/bin/python"
}

# The config, validated here by the server's own loader before anything goes to the Pi. A secret that is
# not in this shell's environment may already be on the Pi (secrets.env): it gets a stand-in value for the
# check only (the Pi warns later if it really has none). Files the config names (TLS certificates, a
# secrets_file) are on the Pi, not here: --for-another-machine takes their paths as written; if one is
# missing on the Pi, the server's own error shows at the restart step.
step_check_config() {
	step check_config "checking $CONFIG_FILE on this computer"
	find_local_python
	local names name out status=0 stand_ins=()
	names=$("$LOCAL_PY" "$SCRIPT_DIR/secret_names.py" "$CONFIG_FILE" 2>&1) ||
		fatal "config error in $CONFIG_FILE: ${names##*: }"
	SECRET_NAMES=$names
	for name in $names; do
		[ -n "$(printenv "$name" || true)" ] || stand_ins+=("$name=provision-check-0123456789abcdef0123456789abcdef")
	done
	out=$(cd "$REPO_ROOT" && env ${stand_ins[@]+"${stand_ins[@]}"} "$LOCAL_PY" -m server --check-config \
		--for-another-machine --config "$CONFIG_FILE" 2>&1 </dev/null) || status=$?
	case "$status" in
	0) info "  the config is valid" ;;
	2) fatal "config error in $CONFIG_FILE: $(printf '%s\n' "$out" | grep -v '^$' | tail -n 1 | sed 's/^homeboard: config error: //')" ;;
	*) fatal "the config check could not run ($LOCAL_PY -m server --check-config, status $status): $(printf '%s\n' "$out" | tail -n 1)" ;;
	esac
}

# ------------------------------------------------------------------------------------------ steps

# Reachable, sudo, Raspberry Pi OS Bookworm, architecture, Pi model, Python, free space. Changes nothing.
step_check_target() {
	step check_target "checking $TARGET"
	local uid
	if ! uid=$(ssh "${SSH_ARGS[@]}" "$TARGET" 'id -u' </dev/null); then
		fatal "unreachable host: cannot log in to $TARGET over SSH. Check the host name, that SSH is on \
(Raspberry Pi Imager → Services → Enable SSH) and that your key is accepted (ssh-copy-id $TARGET)."
	fi
	if [ "$uid" = 0 ]; then
		REMOTE_SHELL="bash -s"
	elif ssh "${SSH_ARGS[@]}" "$TARGET" 'sudo -n true' </dev/null >/dev/null 2>&1; then
		REMOTE_SHELL="sudo -n bash -s"
	else
		fatal "no sudo: ${TARGET%@*} cannot run sudo without a password on ${TARGET#*@}. Use the account \
Raspberry Pi Imager created, or on the Pi: echo '${TARGET%@*} ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/010_homeboard"
	fi
	remote_run remote_check_target
	PI_MODEL=$(fact_of model)
	FLAVOR=$(fact_of flavor)
}

step_packages() {
	step packages "Debian packages"
	remote_run remote_packages
}

step_account() {
	step account "the $HB_USER account"
	remote_run remote_account
}

step_venv() {
	step venv "Python environment"
	remote_run remote_venv "PYPROJECT_B64=$(b64 <"$REPO_ROOT/pyproject.toml")"
}

# The code, with rsync. --delay-updates puts every changed file in place at the very end, so an
# interrupted copy leaves the previous version whole.
step_code() {
	step code "code (rsync to /opt/homeboard)"
	local rsync_path="rsync" dest="$ROOT_PREFIX/opt/homeboard/" out status=0 line n=0
	case "$REMOTE_SHELL" in sudo*) rsync_path="sudo -n rsync" ;; esac
	# What git ignores (.gitignore) is not deployed either: caches, local data, test artifacts.
	local args=(-rlptD --no-owner --no-group --chmod=go-w --omit-dir-times --delete-delay --delay-updates
		--itemize-changes --exclude=/.git/ --exclude=/.venv/ --exclude=/.venv.new/ --exclude=/.venv.old/
		--exclude=/var/ --exclude=/tests/ --exclude=/bench/ --exclude=/.ci/ --exclude=__pycache__/
		--exclude='*.pyc' --exclude=/.pytest_cache/ --exclude=/.ruff_cache/ --exclude='*.egg-info/'
		--exclude=node_modules/ --exclude=/.hypothesis/ --filter=':- .gitignore')
	if [ "$DRY_RUN" = 1 ]; then args+=(--dry-run); fi
	out=$(rsync "${args[@]}" -e "$(rsync_rsh)" --rsync-path="$rsync_path" "$REPO_ROOT/" "$TARGET:$dest") || status=$?
	if [ "$status" -ne 0 ]; then
		printf 'ERROR rsync to %s failed (rsync status %s)\n' "$dest" "$status" >&2
		return 1
	fi
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		n=$((n + 1))
		if [ "$n" -le 12 ]; then info "    $line"; fi
	done <<EOF
$out
EOF
	if [ "$n" -gt 12 ]; then info "    ... and $((n - 12)) more"; fi
	if [ "$n" -eq 0 ]; then
		info "  code unchanged"
		return 0
	fi
	CHANGES=$((CHANGES + 1))
	if [ "$DRY_RUN" = 1 ]; then
		info "  would: update $n files in $dest"
	else
		info "  done: update $n files in $dest"
		ACTIVATED=1
		remote_run remote_compile
	fi
}

step_config() {
	step config "config.yaml"
	remote_run remote_config "CONFIG_B64=$(b64 <"$CONFIG_FILE")"
}

# Secrets from this shell's environment: the ${NAME}s the config uses in its values (and HOMEBOARD_SECRETS).
step_secrets() {
	step secrets "secrets"
	local name value lines="" sent=""
	for name in $SECRET_NAMES ${HOMEBOARD_SECRETS:-}; do
		value=$(printenv "$name" || true)
		[ -n "$value" ] || continue
		case "$value" in
		*"'"* | *$'\n'* | *$'\r'*) fatal "secret $name contains a quote or a line break, which secrets.env cannot hold" ;;
		esac
		lines="$lines$name='$value'"$'\n'
		sent="$sent $name"
	done
	if [ -n "$sent" ]; then info "  from your environment:$sent"; fi
	remote_run remote_secrets "SECRETS_B64=$(printf '%s' "$lines" | b64)"
}

step_interfaces() {
	step interfaces "I2C, 1-Wire, hardware watchdog, journal"
	remote_run remote_interfaces
	local reason
	for reason in $(fact_of reboot); do
		case " $REBOOT_FOR " in *" $reason "*) ;; *) REBOOT_FOR="$REBOOT_FOR $reason" ;; esac
	done
}

step_session() {
	step session "wall session (compositor start-up files, browser unit)"
	remote_run remote_session
}

step_units() {
	step units "systemd units"
	remote_run remote_units
}

step_restart() {
	step restart "services"
	remote_run remote_restart "DEPLOY_CHANGES=$DEPLOY_CHANGES" "SESSION_CHANGES=$SESSION_CHANGES"
}

step_healthz() {
	step healthz "waiting for the server"
	remote_run remote_healthz
	SERVER_HOST=$(fact_of host)
	SERVER_URL="$(fact_of scheme)://${TARGET#*@}:$(fact_of port)/"
}

# After the server: what the wall session really does. A wall that cannot start is a warning, not a failure.
step_wall() {
	step wall "the wall session"
	remote_run remote_wall
}

summary() {
	info ""
	if [ "$CHANGES" -eq 0 ]; then
		info "No changes: $TARGET already runs this version with this setup."
	elif [ "$DRY_RUN" = 1 ]; then
		info "Dry run: $CHANGES changes would be made; nothing was changed."
	else
		info "Done: $CHANGES changes applied."
	fi
	if [ -n "$SERVER_URL" ]; then
		info "Dashboard: $SERVER_URL"
		case "$SERVER_HOST" in
		127.* | localhost | ::1)
			info "  (server.host is $SERVER_HOST, so only the Pi's own screen can open it. For phones and"
			info "   laptops, set server.host: 0.0.0.0 in /etc/homeboard/config.yaml on the Pi and run again.)"
			;;
		esac
	fi
	if [ -n "$WARNINGS" ]; then
		info "Warnings:"
		printf '%s' "$WARNINGS" | sed 's/^/  - /'
	fi
	if [ -n "$REBOOT_FOR" ] && [ "$DRY_RUN" = 0 ]; then
		info "Reboot once to apply:$REBOOT_FOR  →  ssh $TARGET sudo reboot"
	fi
}

provision() {
	if [ "$DRY_RUN" = 1 ]; then STEP_TOTAL=11; fi
	info "Homeboard: provisioning $TARGET$(if [ "$DRY_RUN" = 1 ]; then printf ' (dry run: nothing is changed)'; fi)"
	step_check_config
	step_check_target
	step_packages
	step_account
	counted deploy step_venv
	counted deploy step_code
	counted deploy step_config
	counted deploy step_secrets
	step_interfaces
	counted session step_session
	counted deploy step_units
	if [ "$DRY_RUN" = 0 ]; then
		step_restart
		step_healthz
		step_wall
	fi
	CURRENT_STEP=""
	summary
}

# Checks a running Pi for the known pitfalls; changes nothing. Exit 1 when something must be fixed.
doctor() {
	info "Homeboard doctor: $TARGET"
	STEP_TOTAL=1
	step_check_target >/dev/null
	CURRENT_STEP=""
	local status=0
	REMOTE_LIBS+=("$DOCTOR_LIB")
	remote_run remote_doctor || status=$?
	case "$status" in
	0) ;;
	2) exit 1 ;;
	*) fatal "the checks could not run on $TARGET (status $status)" ;;
	esac
}

# ------------------------------------------------------------------------------------------ main

parse_args() {
	if [ "${1:-}" = doctor ]; then
		MODE=doctor
		shift
	fi
	while [ $# -gt 0 ]; do
		case "$1" in
		--dry-run | -n) DRY_RUN=1 ;;
		-p)
			SSH_PORT=${2:?-p needs a port}
			shift
			;;
		-i)
			SSH_KEY=${2:?-i needs a key file}
			shift
			;;
		-c)
			CONFIG_FILE=${2:?-c needs a config file}
			shift
			;;
		-h | --help) usage 0 ;;
		-*)
			printf 'provision: unknown option %s\n' "$1" >&2
			usage 2 >&2
			;;
		*)
			[ -z "$TARGET" ] || fatal "one USER@HOST only (got $TARGET and $1)"
			TARGET=$1
			;;
		esac
		shift
	done
	[ -n "$TARGET" ] || usage 2 >&2
	case "$TARGET" in *@*) ;; *) fatal "give the target as USER@HOST (e.g. pi@homeboard.local), not $TARGET" ;; esac
	[ -r "$CONFIG_FILE" ] || fatal "cannot read the config file $CONFIG_FILE"
	CONFIG_FILE="$(cd "$(dirname "$CONFIG_FILE")" && pwd)/$(basename "$CONFIG_FILE")"
	[ -r "$REMOTE_LIB" ] || fatal "$REMOTE_LIB is missing"
	[ -r "$DOCTOR_LIB" ] || fatal "$DOCTOR_LIB is missing"
	command -v ssh >/dev/null || fatal "ssh is not installed on this computer"
	command -v rsync >/dev/null || fatal "rsync is not installed on this computer (macOS: brew install rsync)"
}

main() {
	parse_args "$@"
	trap on_exit EXIT
	setup_ssh
	if [ "$MODE" = doctor ]; then
		doctor
	else
		provision
	fi
}

main "$@"
