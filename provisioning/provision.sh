#!/usr/bin/env bash
# Install or update Homeboard on a Raspberry Pi over SSH, from your computer. Safe to run again:
# a second run changes nothing and says so. `doctor` checks a running Pi and says what to fix.
#
#   provisioning/provision.sh [--dry-run] [-p PORT] [-i KEY] [-c CONFIG] USER@HOST
#   provisioning/provision.sh doctor [-p PORT] [-i KEY] USER@HOST
#
# USER needs passwordless sudo on the Pi (the account Raspberry Pi Imager creates has it).
# -c CONFIG: the config.yaml to install when the Pi has none yet (default: the repository's).
# Secrets: each ${NAME} in that config which is set in this shell's environment is written to
# /etc/homeboard/secrets.env (0600) on the Pi. Values travel inside the SSH session, never on a
# command line, and are never printed.
#
# Environment (optional): HOMEBOARD_SSH_CONFIG (ssh -F file), HOMEBOARD_ROOT (prefix for every path on
# the target; tests use a sandbox), HOMEBOARD_HW_WATCHDOG (1 default, 0 off), HOMEBOARD_MIN_FREE_MB (600),
# HOMEBOARD_SECRETS (more secret names), HOMEBOARD_HEALTHZ_WAIT_S (90).
#
# The steps that run on the Pi are in provisioning/remote.sh; this file is the part on your computer.
# Runs with bash ≥ 3.2 (macOS) here and bash 5 on the Pi.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
REMOTE_LIB="$SCRIPT_DIR/remote.sh"
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
STEP_TOTAL=12
CHANGES=0
DEPLOY_CHANGES=0  # changes that need the server restarted
SESSION_CHANGES=0 # changes that need the browser restarted
ACTIVATED=0       # 1 once new code is in place: a later failure may leave it half set up
REBOOT_FOR=""
PI_MODEL=""
LAST_OUTPUT=""
SERVER_URL=""
SERVER_HOST=""

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
		printf 'ROOT=%q DRY=%q HB_USER=%q PI_MODEL=%q\n' "$ROOT_PREFIX" "$DRY_RUN" "$HB_USER" "$PI_MODEL"
		printf 'HW_WATCHDOG=%q MIN_FREE_MB=%q HEALTHZ_WAIT_S=%q\n' "${HOMEBOARD_HW_WATCHDOG:-1}" \
			"${HOMEBOARD_MIN_FREE_MB:-600}" "${HOMEBOARD_HEALTHZ_WAIT_S:-90}"
		for assignment in "$@"; do printf '%s=%q\n' "${assignment%%=*}" "${assignment#*=}"; done
		cat "$REMOTE_LIB"
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

# Secrets from this shell's environment: the ${NAME}s the config uses (and HOMEBOARD_SECRETS).
step_secrets() {
	step secrets "secrets"
	local names name value lines="" sent=""
	# shellcheck disable=SC2016 # a literal ${NAME} pattern
	names=$( (grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' "$CONFIG_FILE" || true) | tr -d '${}' | sort -u)
	for name in $names ${HOMEBOARD_SECRETS:-}; do
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
	step session "kiosk session (greetd, labwc, browser unit)"
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
	if [ -n "$REBOOT_FOR" ] && [ "$DRY_RUN" = 0 ]; then
		info "Reboot once to apply:$REBOOT_FOR  →  ssh $TARGET sudo reboot"
	fi
}

provision() {
	if [ "$DRY_RUN" = 1 ]; then STEP_TOTAL=10; fi
	info "Homeboard: provisioning $TARGET$(if [ "$DRY_RUN" = 1 ]; then printf ' (dry run: nothing is changed)'; fi)"
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
	[ -r "$REMOTE_LIB" ] || fatal "$REMOTE_LIB is missing"
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
